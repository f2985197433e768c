"""The out-of-sample figures broken down by series, by calendar year and by volatility regime.

Each group's skill, move skill and direction skill (with 95% intervals) come from its own
windows. Its Sharpe is that of the strategy trading the group's windows only: every other
window's position is set flat (its score to 0), the portfolio is built as the backtest
builds it, and the Sharpe is taken over the dates on which the group has a window. So a
series' Sharpe is its share of the book, a year's is the book in that year, and a regime's
is the book when it trades only in that regime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finseq.backtest import sharpe_ratio
from finseq.evidence import SKILLS, configured_totals, skill_intervals
from finseq.params import BacktestConfig, EvaluateConfig

KINDS = ("series", "year", "regime")


def group_labels(table: pd.DataFrame, kind: str) -> pd.Series:
    """Each window's group of one kind; a window without one (no regime recorded) is NaN."""
    if kind == "year":
        return table["timestamp"].str[:4]
    if kind == "regime":
        if "regime" not in table:
            return pd.Series(np.nan, index=table.index)
        return table["regime"].replace("", np.nan)
    return table[kind]


def trading_only(table: pd.DataFrame, members: np.ndarray) -> pd.DataFrame:
    """The table with every window outside `members` given a score of 0 (a flat position)."""
    masked = table.copy()
    middle = (table["p_up"] + table["p_down"]) / 2
    masked.loc[~members, "p_up"] = middle[~members]
    masked.loc[~members, "p_down"] = middle[~members]
    return masked


def group_figures(
    table: pd.DataFrame,
    members: np.ndarray,
    backtest: BacktestConfig,
    evaluate: EvaluateConfig,
    horizon: int,
) -> dict[str, float | int]:
    rows = table[members]
    samples = int(rows["label"].notna().sum())
    if rows["timestamp"].nunique() < 2:
        # One date (a year the test period only touches) makes no daily series to judge.
        unmeasured = [f"{name}{end}" for name in SKILLS for end in ("", "_low", "_high")]
        return {"samples": samples, **dict.fromkeys(unmeasured, np.nan), "sharpe": np.nan}
    skills = skill_intervals(
        configured_totals(rows, backtest, horizon),
        horizon,
        evaluate.resamples,
        evaluate.bootstrap_seed,
    )
    book = configured_totals(trading_only(table, members), backtest, horizon)
    on_group_dates = np.isin(book.dates, pd.to_datetime(rows["timestamp"]).to_numpy())
    returns = book.strategy[on_group_dates & np.isfinite(book.strategy)]
    sharpe = sharpe_ratio(returns, book.per_year) if len(returns) > 1 else np.nan
    return {"samples": samples, **skills, "sharpe": sharpe}


def breakdowns(
    table: pd.DataFrame, backtest: BacktestConfig, evaluate: EvaluateConfig, horizon: int
) -> dict[str, dict[str, dict]]:
    """{kind: {group: figures}} for every kind with at least one group."""
    result: dict[str, dict[str, dict]] = {}
    for kind in KINDS:
        labels = group_labels(table, kind)
        groups = sorted(labels.dropna().unique(), key=_group_order)
        if groups:
            result[kind] = {
                str(group): group_figures(
                    table, (labels == group).to_numpy(), backtest, evaluate, horizon
                )
                for group in groups
            }
    return result


def _group_order(group: str) -> tuple[int, str]:
    """Regimes low, mid, high; everything else by name."""
    order = {"low": 0, "mid": 1, "high": 2}
    return (order.get(group, 3), str(group))
