"""What prepare tells the user: its notes, and metrics/data.json (samples and class balance
per part of each fold). No model depends on this module, so rewording a note retrains
nothing.
"""

from __future__ import annotations

import numpy as np

from finseq.artifacts import PreparedData
from finseq.errors import note
from finseq.inputs import source_file
from finseq.labels import CLASS_LABELS
from finseq.params import LabelConfig
from finseq.split import FINAL, HOLDOUT, SPLIT_NAMES, TEST, TRAIN, counts_by_series_and_part

# A series with more undecided ties than this share of its labelled bars gets a note.
TIE_NOTE_SHARE = 0.01


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    return {str(label): int((labels == label).sum()) for label in CLASS_LABELS}


def note_undecided_ties(shares: dict[str, float], label_config: LabelConfig) -> None:
    """One note for the panel: how many series have more than TIE_NOTE_SHARE undecided."""
    over = {path: share for path, share in shares.items() if share > TIE_NOTE_SHARE}
    if not over:
        return
    worst = max(over, key=over.get)
    which = (
        f"{worst}: {over[worst]:.1%} of its triple-barrier labels are undecided"
        if len(over) == 1
        else f"{len(over)} series have over {TIE_NOTE_SHARE:.0%} of their triple-barrier "
        f"labels undecided (the most, {worst}: {over[worst]:.1%})"
    )
    note(
        f"{which}: one bar touched both barriers after opening between them, so which came "
        "first is unknown. They are left out of training, validation and the test metrics "
        f"(the backtest trades them); a wider barrier (label.threshold = "
        f"{label_config.threshold} now) makes them rarer"
    )


def note_empty_splits(data: PreparedData) -> None:
    """Per series, the parts of the scored folds it has no bars in."""
    names = data.meta["series_names"]
    for fold in data.meta["evaluated_folds"]:
        parts = data.parts[data.fold_index(fold)]
        rows = counts_by_series_and_part(data.series, parts, len(names))
        where = "" if fold == HOLDOUT else f" in fold {fold}"
        for code, split_code in np.argwhere(rows == 0):
            note(
                f"series {names[code]!r} has no {SPLIT_NAMES[split_code]} bars{where}: "
                "it does not cover that period"
            )


def note_missing_classes(data: PreparedData) -> None:
    """A class absent from the training samples of every fold: the model cannot learn it,
    and its prior gives it the add-one share only (label.threshold far from the returns'
    scale gives every label 0)."""
    present = np.zeros(len(CLASS_LABELS), dtype=bool)
    for index in range(len(data.fold_names)):
        training = data.samples[index] & (data.parts[index] == TRAIN)
        present |= np.isin(CLASS_LABELS, data.labels[training])
    if not present.all():
        missing = ", ".join(str(label) for label in np.asarray(CLASS_LABELS)[~present])
        which = "that class" if (~present).sum() == 1 else "those classes"
        note(
            f"no training sample of any fold is labelled {missing}: the model cannot learn "
            f"{which}; check label.threshold ({data.meta['label']['threshold']}) against "
            "the returns' scale"
        )


def note_stale_opens(data: PreparedData) -> None:
    """Per file, each period in which its bars open at the previous close implausibly often
    (prepare.stale_open_periods): no other output says that its gap feature and the
    backtest's fills there are not what they seem."""
    for path, name in zip(data.meta["files"], data.meta["series_names"], strict=True):
        for period in data.meta["stale_opens"][name]:
            first, last = period["first"][:4], period["last"][:4]
            years = first if first == last else f"{first}-{last}"
            note(
                f"{path}: Open equals the previous Close on {period['share']:.0%} of bars in "
                f"{years} (stale opens): the gap feature is about 0 there, and the backtest's "
                "next-open fill is the signal bar's close"
            )


def _part_summary(data: PreparedData, fold: str) -> dict:
    index = data.fold_index(fold)
    summary = {}
    for split_code, split_name in enumerate(SPLIT_NAMES):
        in_split = data.parts[index] == split_code
        if fold == FINAL and split_code == TEST:
            continue
        samples = in_split & data.samples[index]
        summary[split_name] = {
            "rows": int(in_split.sum()),
            "samples": int(samples.sum()),
            "class_counts": _class_counts(data.labels[samples]),
        }
        if "both_touch" in data.meta:
            summary[split_name]["both_touch"] = data.meta["both_touch"][fold][split_name]
    return summary


def lockbox_summary(meta: dict) -> dict:
    """The lockbox date and how many bars of each series it sealed (none read by prepare)."""
    return {"date": meta["split"].get("lockbox"), "sealed_bars": meta.get("sealed_bars", {})}


def data_summary(data: PreparedData) -> dict:
    """The files read (data.files expanded), sample counts and class balance per part of each
    fold, each series' stale-open periods and the lockbox, for metrics/data.json."""
    read = {"files": list(dict.fromkeys(source_file(key) for key in data.meta["files"]))}
    if data.meta["split_method"] == "holdout":
        dates = data.meta["folds"][HOLDOUT]
        return {
            **read,
            "val_start": dates["val_start"],
            "test_start": dates["test_start"],
            **_part_summary(data, HOLDOUT),
            "stale_opens": data.meta["stale_opens"],
            "lockbox": lockbox_summary(data.meta),
        }
    return {
        **read,
        "method": data.meta["split_method"],
        "stale_opens": data.meta["stale_opens"],
        "lockbox": lockbox_summary(data.meta),
        "folds": {
            fold: {
                **{
                    key: value
                    for key, value in data.meta["folds"][fold].items()
                    if not key.startswith("scaler")
                },
                **_part_summary(data, fold),
            }
            for fold in data.fold_names
        },
    }
