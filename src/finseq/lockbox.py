"""The lockbox stage (`run_lockbox`): the bars from `split.lockbox` on stay sealed from every
default stage (prepare cuts them off before it computes anything: prepare.seal_lockbox),
and are opened only by one explicit, recorded act, `split.lockbox_open: true`.

Sealed, the stage writes metrics/lockbox.json as {"opened": false, "openings": K, "date"}
and reads no bar at all. Opened, it scores models/model.pth on the sealed bars through
finseq.predict (features from the raw files, the checkpoint's scaler and calibration),
labels them from the same raw files with the same label params, and writes the `lockbox.*`
figures of finseq.evaluate beside the model's own class prior (that of its training
windows), and the backtest after costs of finseq.evidence.

Openings are counted from git, so that none can be taken back quietly: every metrics/
lockbox.json in the history of any ref (branches, tags and DVC's experiment refs) that says
"opened": true, each distinct file once, plus this opening.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.artifacts import PreparedData, WindowSets
from finseq.atomic import write_json
from finseq.checkpoint import load_checkpoint
from finseq.errors import ConfigError, DataError
from finseq.evaluate import PRIOR_COLUMNS, class_prior, table_metrics
from finseq.evidence import configured_backtest
from finseq.inputs import expand_entries, read_sources, series_name, source_file
from finseq.labels import CLASS_LABELS, TIE_UNDECIDED, label_outcome, to_classes
from finseq.params import Params
from finseq.paths import LOCKBOX_METRICS, MODEL_FILE, PREPARED_DIR, WINDOWS_DIR
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


def _git(root: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except FileNotFoundError:
        return None


def recorded_openings(root: Path = Path()) -> int | None:
    """How many distinct opened metrics/lockbox.json files the git history of any ref holds;
    None outside a git repository (no history to count from). A file committed twice (an
    experiment's commit, then the same file on a branch) is one opening."""
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0:
        return None
    log = _git(root, "log", "--all", "--format=%H", "--", LOCKBOX_METRICS)
    opened = set()
    for commit in log.stdout.split() if log.returncode == 0 else []:
        shown = _git(root, "show", f"{commit}:./{LOCKBOX_METRICS}")
        if shown.returncode != 0:  # the commit deleted it
            continue
        try:
            recorded = json.loads(shown.stdout)
        except json.JSONDecodeError:
            continue
        if isinstance(recorded, dict) and recorded.get("opened") is True:
            opened.add(shown.stdout)
    return len(opened)


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


def lockbox_figures(table: pd.DataFrame, params: Params) -> dict:
    """metrics/lockbox.json's `lockbox.*` keys of an opened lockbox's scored table."""
    if not len(table):
        raise DataError(
            f"split.lockbox = {params.split.lockbox!r} leaves no sealed bar with a full window "
            "of the model to score"
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


def lockbox_report(params: Params, root: Path = Path()) -> dict:
    """What metrics/lockbox.json says: sealed, or this opening's figures and count."""
    openings = recorded_openings(root)
    report = {"date": params.split.lockbox, "opened": params.split.lockbox_open}
    if not params.split.lockbox_open:
        return {**report, "openings": openings}
    if openings is None:
        raise ConfigError(
            "split.lockbox_open = True outside a git repository: an opening must be recorded "
            "in git history; run it in the project's git checkout"
        )
    table, model_md5 = lockbox_table(params, root)
    return {
        **report,
        "openings": openings + 1,
        "opened_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model_md5": model_md5,
        "lockbox": lockbox_figures(table, params),
    }


def run_lockbox(params: Params, root: Path = Path()) -> dict:
    """The lockbox stage under a project root: metrics/lockbox.json."""
    report = lockbox_report(params, root)
    write_json(root / LOCKBOX_METRICS, report)
    return report
