"""The seed ensemble, and training noise: each seed's verdict figures and their spread.

With `train.seeds` = S > 1 each fold is trained once per seed and the run is judged on the
seeds' ensemble (their probabilities averaged). Each seed's fold models also give an
out-of-sample predictions table of their own; the spread of those figures (sd over S
seeds, S - 1 degrees of freedom) measures training noise, and sd / sqrt(S) is that of the
ensemble's figure: to first order, the ensemble's figure moves as the mean of S independent
seeds' figures. The report widens its intervals by the difference of two such ensembles,
with a t quantile (finseq.verdicts.training_noise).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from finseq.calibration import ensemble_probabilities, softmax
from finseq.evaluate import FoldScores, table_metrics
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
    """Each seed's figures (`s<seed>.*`), their standard deviation across seeds (`*_sd`,
    ddof = 1) and that of the ensemble of them all (`*_ensemble_sd` = sd / sqrt(count)):
    the training noise that the report adds to its intervals."""
    spread: dict = {"count": len(per_seed)}
    for offset, figures in enumerate(per_seed):
        spread[f"s{first_seed + offset}"] = figures
    for name in [name for name in SEED_FIGURES if all(name in seed for seed in per_seed)]:
        spread[f"{name}_sd"] = float(np.std([figures[name] for figures in per_seed], ddof=1))
        spread[f"{name}_ensemble_sd"] = spread[f"{name}_sd"] / float(np.sqrt(len(per_seed)))
    return spread


def ensemble_scores(members: list[FoldScores]) -> FoldScores:
    """A fold's ensemble: its test probabilities the mean of its members' calibrated ones,
    its logits those of the mean of their softmax probabilities (so val figures are the
    ensemble's too). One member is itself."""
    if len(members) == 1:
        return members[0]
    logits = {
        part: np.log(ensemble_probabilities([softmax(member.logits[part]) for member in members]))
        for part in members[0].logits
    }
    return dataclasses.replace(
        members[0],
        logits=logits,
        test_probabilities=ensemble_probabilities([member.probabilities() for member in members]),
    )
