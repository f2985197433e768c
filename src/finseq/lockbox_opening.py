"""An opened lockbox (`split.lockbox_open: true`, counted by finseq.lockbox): models/model.pth
scored on the sealed bars through finseq.predict (features from the raw files, the
checkpoint's scaler and calibration), labelled from the same raw files with the same label
params, and the `lockbox.*` figures of finseq.evaluate beside the model's own class prior
(that of its training windows), with the backtest after costs of finseq.evidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from finseq.artifacts import PreparedData, WindowSets
from finseq.checkpoint import load_checkpoint
from finseq.errors import ConfigError, DataError
from finseq.evaluate import PRIOR_COLUMNS, class_prior, table_metrics
from finseq.evidence import configured_backtest
from finseq.inputs import expand_entries, read_sources, series_name, source_file
from finseq.labels import CLASS_LABELS, TIE_UNDECIDED, label_outcome, to_classes
from finseq.params import Params
from finseq.paths import MODEL_FILE, PREPARED_DIR, WINDOWS_DIR
from finseq.predict import Selection, predict
from finseq.prepare import outcome_returns
from finseq.split import before_lockbox

# The figures of the class table and of the backtest that metrics/lockbox.json keeps.
CLASS_FIGURES = (
    "samples",
    "loss",
    "prior_loss",
    "accuracy",
    "majority_accuracy",
    "balanced_accuracy",
    "skill",
    "move_skill",
    "direction_skill",
)
BACKTEST_FIGURES = ("sharpe", "annual_return", "max_drawdown", "turnover", "buy_hold_sharpe")


def sealed_bars_table(
    params: Params, root: Path, series: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Every sealed bar of every file: its series, timestamp, label (computed from the whole
    raw file with the label params, so unknown where its look-ahead runs past the file's
    end or a tie is undecided) and the returns a position decided there would earn."""
    pieces = []
    series = _series(params, root) if series is None else series
    for key, frame in series.items():
        sealed = ~before_lockbox(frame.index.to_numpy(), params.split.lockbox)
        labels, ties = label_outcome(frame, params.label)
        forward, next_bar = outcome_returns(frame, params.label.horizon)
        known = ~np.isnan(labels) & (ties != TIE_UNDECIDED)
        pieces.append(
            pd.DataFrame(
                {
                    "series": series_name(key),
                    "timestamp": frame.index.to_numpy()[sealed],
                    "label": np.where(known, labels, np.nan)[sealed],
                    "forward_return": forward[sealed],
                    "next_return": next_bar[sealed],
                }
            )
        )
    return pd.concat(pieces, ignore_index=True)


def _series(params: Params, root: Path) -> dict[str, pd.DataFrame]:
    """Every series of data.files (expanded and read as prepare reads them), keyed as
    inputs.read_sources keys them."""
    series = {}
    for path in expand_entries(params.data.files, root):
        series.update(read_sources(path, root, params.data.adjust_volume))
    return series


def model_prior(checkpoint: dict, root: Path) -> np.ndarray:
    """The class prior of the training windows of the model's fold: the baseline every
    skill of evaluate is measured against, from the data the model was trained on."""
    data = PreparedData.load(root / PREPARED_DIR, mmap=True)
    windows = WindowSets.load(root / WINDOWS_DIR)
    provenance = checkpoint["provenance"]
    if (provenance.get("prepared_hash"), provenance.get("windows_hash")) != (
        data.content_hash,
        windows.content_hash,
    ):
        raise DataError(
            f"{MODEL_FILE} was trained on other prepared data or windows than {PREPARED_DIR} "
            f"and {WINDOWS_DIR}; run `dvc repro` before opening the lockbox"
        )
    fold = checkpoint["training"]["fold"]
    return class_prior(to_classes(data.labels[windows.ends[fold]["train"]]))


def lockbox_table(params: Params, root: Path) -> tuple[pd.DataFrame, str]:
    """The model's calibrated probabilities for every sealed bar it can score (a full
    window), beside its label, returns and the model's prior; and the model's md5."""
    model_file = root / MODEL_FILE
    _, checkpoint = load_checkpoint(model_file)
    trained_with = checkpoint["params"]["split"].get("lockbox")
    if trained_with != params.split.lockbox:
        raise ConfigError(
            f"split.lockbox = {params.split.lockbox!r}, but {MODEL_FILE} was trained with "
            f"split.lockbox = {trained_with!r}: it may have seen the bars to be scored; run "
            "`dvc repro` first"
        )
    prior = model_prior(checkpoint, root)
    series = _series(params, root)
    bars = sealed_bars_table(params, root, series)
    sealed = set(bars["series"])
    files = list(dict.fromkeys(source_file(key) for key in series if series_name(key) in sealed))
    since = pd.Timestamp(bars["timestamp"].min())
    scored = predict(
        [str(root / path) for path in files],
        model_file,
        Selection(last=None, since=since),
        params.evaluate.calibration,
    )
    scored = scored.drop(columns="label").merge(bars, on=["series", "timestamp"], how="inner")
    known = scored["label"].notna()
    classes = to_classes(np.nan_to_num(scored["label"].to_numpy()))
    table = scored.assign(
        prior_p=np.where(known, prior[classes], np.nan),
        majority=CLASS_LABELS[int(prior.argmax())],
        **dict(zip(PRIOR_COLUMNS, prior, strict=True)),
    )
    return table, str(scored["model"].iloc[0]) if len(scored) else ""


# Dates with a known label below which an opened lockbox's figures say nothing (a Sharpe
# of 17 from two bars): the opening is refused, and not spent on them.
MIN_LOCKBOX_DATES = 20


def lockbox_figures(table: pd.DataFrame, params: Params) -> dict:
    """metrics/lockbox.json's `lockbox.*` keys of an opened lockbox's scored table."""
    if not len(table):
        raise DataError(
            f"split.lockbox = {params.split.lockbox!r} leaves no sealed bar with a full window "
            "of the model to score"
        )
    dates = table.loc[table["label"].notna(), "timestamp"].nunique()
    if dates < MIN_LOCKBOX_DATES:
        raise ConfigError(
            f"split.lockbox = {params.split.lockbox!r} leaves {dates} sealed date(s) with a "
            f"known label (the last label.horizon = {params.label.horizon} bars of a file have "
            f"none); an opened lockbox needs at least {MIN_LOCKBOX_DATES}: choose an earlier date"
        )
    classes = table_metrics(table)
    backtest, _ = configured_backtest(table, params.backtest, params.label.horizon)
    return {
        "windows": len(table),
        "first_date": pd.Timestamp(table["timestamp"].min()).isoformat(),
        "last_date": pd.Timestamp(table["timestamp"].max()).isoformat(),
        **{key: classes[key] for key in CLASS_FIGURES},
        **{key: backtest[key] for key in BACKTEST_FIGURES},
    }
