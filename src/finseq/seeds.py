"""Training noise: each seed's verdict figures and their spread across seeds.

With `train.seeds` > 1 each fold is trained once per seed; each seed's fold models give an
out-of-sample predictions table of their own, and the spread of their figures is the
training noise that the report adds to its intervals before it calls a change better or
worse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finseq.evaluate import table_metrics
from finseq.evidence import configured_backtest
from finseq.params import BacktestConfig

SEED_FIGURES = ("skill", "move_skill", "direction_skill", "loss", "accuracy", "sharpe")


def figures_of_seed(predictions: pd.DataFrame, backtest: BacktestConfig, horizon: int) -> dict:
    """The verdict figures of one seed's fold models, from its out-of-sample predictions
    table (as recorded), as the headline's come from the default seed's."""
    pooled = table_metrics(predictions)
    figures, _ = configured_backtest(predictions, backtest, horizon)
    return {
        **{name: pooled[name] for name in SEED_FIGURES if name in pooled and name != "sharpe"},
        "sharpe": figures["sharpe"],
    }


def seed_spread(per_seed: list[dict], first_seed: int) -> dict:
    """Each seed's figures (`s<seed>.*`) and their standard deviation across seeds (`*_sd`,
    ddof = 1): the training noise that the report adds to its intervals."""
    spread: dict = {"count": len(per_seed)}
    for offset, figures in enumerate(per_seed):
        spread[f"s{first_seed + offset}"] = figures
    for name in [name for name in SEED_FIGURES if all(name in seed for seed in per_seed)]:
        spread[f"{name}_sd"] = float(np.std([figures[name] for figures in per_seed], ddof=1))
    return spread
