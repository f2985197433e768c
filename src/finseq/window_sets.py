"""The window stage (`run_window`): window end rows for each part of each fold of the
prepared data, with the checks and notes on parts too short for a window.

Holdout windows lie inside one part; walk-forward windows only end in their part (see
finseq.windows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from finseq.artifacts import PreparedData, WindowSets
from finseq.errors import ConfigError, DataError, note
from finseq.params import Params, WindowConfig
from finseq.paths import PREPARED_DIR, WINDOWS_DIR
from finseq.split import HOLDOUT, SPLIT_NAMES, counts_by_series_and_part
from finseq.windows import window_ends


def make_window_sets(data: PreparedData, config: WindowConfig) -> WindowSets:
    """Window ends for each part of each fold; stops with a clear message when a part gets
    none."""
    files = data.meta["files"]
    needed = data.meta["warmup_bars"] + config.seq_len + data.meta["label_horizon"]
    for path, bars in zip(files, data.meta["series_bars"], strict=True):
        if bars < needed:
            raise DataError(
                f"{path}: only {bars} bars; too short for warm-up ({data.meta['warmup_bars']}) "
                f"+ window.seq_len ({config.seq_len}) + label.horizon "
                f"({data.meta['label_horizon']}) = {needed}"
            )
    names = data.meta["series_names"]
    holdout = data.meta["split_method"] == "holdout"
    whole_series = np.zeros(len(data.series), dtype=np.int8)
    ends: dict[str, dict[str, np.ndarray]] = {}
    for fold in data.fold_names:
        index = data.fold_index(fold)
        parts = np.asarray(data.parts[index])
        runs = parts if holdout else whole_series
        ends_all = window_ends(
            data.series, runs, np.asarray(data.samples[index]), config.seq_len, config.stride
        )
        rows = counts_by_series_and_part(data.series, parts, len(names))
        windows = counts_by_series_and_part(data.series[ends_all], parts[ends_all], len(names))
        used = [code for code in range(len(SPLIT_NAMES)) if rows[:, code].sum() > 0]
        where = "" if fold == HOLDOUT else f" in fold {fold}"
        for split_code in used:
            split_name = SPLIT_NAMES[split_code]
            if windows[:, split_code].sum() == 0:
                setting = f"window.seq_len = {config.seq_len} (window.stride = {config.stride})"
                if holdout:
                    raise ConfigError(
                        f"{setting} leaves no {split_name} windows: the longest {split_name} "
                        f"stretch of any series has {rows[:, split_code].max()} rows after "
                        "warm-up; lower window.seq_len or widen the split"
                    )
                raise ConfigError(
                    f"{setting} leaves no {split_name} windows{where}: no {split_name} sample of "
                    f"any series has {config.seq_len} rows of its series up to it after warm-up"
                    f"{' where window.stride places one' if config.stride > 1 else ''}; lower "
                    f"window.seq_len{' or window.stride' if config.stride > 1 else ''}, or raise "
                    "split.oos_start"
                )
        if fold in data.meta["evaluated_folds"]:
            for code, split_code in np.argwhere(windows == 0):
                note(
                    f"series {names[code]!r} has no {SPLIT_NAMES[split_code]} windows{where} of "
                    f"window.seq_len = {config.seq_len}"
                )
        ends[fold] = {
            SPLIT_NAMES[split_code]: ends_all[parts[ends_all] == split_code] for split_code in used
        }
    return WindowSets(
        seq_len=config.seq_len, stride=config.stride, ends=ends, prepared_hash=data.content_hash
    )


def run_window(params: Params, root: Path = Path()) -> WindowSets:
    """The window stage under a project root: data/windows, cut from data/prepared."""
    data = PreparedData.load(root / PREPARED_DIR, mmap=True)
    windows = make_window_sets(data, params.window)
    windows.save(root / WINDOWS_DIR)
    return windows
