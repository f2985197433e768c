"""models/model.pth: a dict of tensors and plain values, never a pickled module.

The checkpoint holds everything needed to use the model on new bars: the weights (for
gradient-boosted trees, the booster's text model, a str in the state dict), the model
config (to rebuild the module through the registry), the window length, the feature names
and scaler statistics (to compute and scale inputs), and the mapping from class index to
label. With `train.seeds` above 1 it holds every seed's model of its fold: the first
seed's at the top, the further seeds' under `ensemble` (weights, calibrations, best epoch),
sharing its scaler and windows; the model's probabilities are their average. It also says
what it was built from (`params`: the
label, split, window, model and train settings; `provenance`: content hashes of the
prepared data and window sets, a hash of the model's source, the finseq and torch
versions; `training`: the fold, its cut dates, the last bar it learned from). It loads
with torch.load(weights_only=True), which refuses any file that would run code while
unpickling.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from finseq.atomic import atomic_path
from finseq.errors import ConfigError, DataError
from finseq.labels import CLASS_LABELS
from finseq.models import build_model
from finseq.params import ModelConfig, parse_section

# 3: the further seeds' models under "ensemble" (format 2 held one model).
FORMAT_VERSION = 3
REQUIRED_KEYS = (
    "format_version",
    "state_dict",
    "model_config",
    "n_features",
    "seq_len",
    "feature_names",
    "scaler_mean",
    "scaler_std",
    "class_labels",
    "params",
    "provenance",
    "ensemble",
)


def make_checkpoint(
    model: nn.Module,
    model_config: ModelConfig,
    *,
    seq_len: int,
    feature_names: list[str],
    scaler_mean: list[float],
    scaler_std: list[float],
    training: dict,
    params: dict,
    provenance: dict,
) -> dict:
    """`training`, `params` and `provenance` hold plain values only (see the module doc)."""
    return {
        "format_version": FORMAT_VERSION,
        "state_dict": {name: _plain(value) for name, value in model.state_dict().items()},
        "model_config": dataclasses.asdict(model_config),
        "n_features": len(feature_names),
        "seq_len": seq_len,
        "feature_names": list(feature_names),
        "scaler_mean": torch.tensor(scaler_mean, dtype=torch.float64),
        "scaler_std": torch.tensor(scaler_std, dtype=torch.float64),
        "class_labels": list(CLASS_LABELS),
        "training": training,
        "params": params,
        "provenance": provenance,
        "ensemble": [],
    }


def with_further_seeds(checkpoint: dict, further: list[dict]) -> dict:
    """`checkpoint` (its fold's first seed) holding the models of the `further` seeds'
    checkpoints of the same fold, in seed order, as its ensemble members."""
    return {
        **checkpoint,
        "ensemble": [
            {
                "seed": other["training"]["seed"],
                "best_epoch": other["training"]["best_epoch"],
                "stop_reason": other["training"]["stop_reason"],
                "state_dict": other["state_dict"],
                "calibrations": other["calibrations"],
            }
            for other in further
        ],
    }


def _plain(value: object) -> object:
    """A tensor on the CPU; a module's extra state (a tree model's text) as it is."""
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Saves through a file object: given a path, torch names the archive's root folder after
    the (random) temporary file, and identical runs would give different bytes."""
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        torch.save(checkpoint, handle)


def _refusal_reason(exc: pickle.UnpicklingError) -> str:
    """Names what torch's weights-only unpickler refused, without its long advice to bypass it."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if refused:
        return (
            f"it asks for {refused.group(1)}, which is not a tensor or plain value and could "
            "run code; load only checkpoints written by finseq"
        )
    return "its pickled data holds something other than tensors and plain values, or is corrupt"


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuilds the model from a checkpoint file, refusing anything but plain data."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found; run `dvc repro train` or `dvc pull`")
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path}: not a readable model checkpoint: not a PyTorch zip archive (truncated, "
            "corrupt or another format); rebuild it with `dvc repro train` or `dvc pull`"
        )
    _check_zip_checksums(path)
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: refused to load: {_refusal_reason(exc)}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: not a readable model checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise DataError(
            f"{path}: not a finseq checkpoint (expected keys: {', '.join(REQUIRED_KEYS)})"
        )
    if checkpoint["format_version"] != FORMAT_VERSION:
        raise DataError(
            f"{path}: checkpoint format {checkpoint['format_version']!r} is not supported "
            f"(this version reads format {FORMAT_VERSION})"
        )
    try:
        model_config = parse_section(ModelConfig, checkpoint["model_config"], "model")
    except ConfigError as exc:
        raise DataError(f"{path}: invalid model config in checkpoint: {exc}") from None
    _check_fields(checkpoint, path)
    model = _built(model_config, checkpoint, checkpoint["state_dict"], path, device)
    return model, checkpoint


def _check_zip_checksums(path: Path) -> None:
    """torch.load does not check the archive's CRC-32s: flipped bits in the weights would
    load as other weights. zipfile checks every member's."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        damaged = " ".join(str(exc).split())
    if damaged is not None:
        raise DataError(
            f"{path}: corrupt: the checksum of {damaged} fails; rebuild it with "
            "`dvc repro train` or `dvc pull`"
        )


def _check_fields(checkpoint: dict, path: Path) -> None:
    """The fields prediction and evaluation read, of the types and sizes finseq writes:
    a hand-edited or foreign file is refused here, not by a KeyError or a NaN later."""
    n_features = checkpoint["n_features"]
    scaler = [checkpoint["scaler_mean"], checkpoint["scaler_std"]]
    problems = {
        "n_features": not (type(n_features) is int and n_features >= 1),
        "seq_len": not (type(checkpoint["seq_len"]) is int and checkpoint["seq_len"] >= 1),
        "feature_names": not (
            isinstance(checkpoint["feature_names"], list)
            and len(checkpoint["feature_names"]) == n_features
        ),
        "scaler_mean, scaler_std": not all(
            isinstance(values, torch.Tensor)
            and values.shape == (n_features,)
            and bool(torch.isfinite(values).all())
            for values in scaler
        )
        or not bool((scaler[1] > 0).all()),
        "class_labels": checkpoint["class_labels"] != list(CLASS_LABELS),
        "provenance": not (
            isinstance(checkpoint["provenance"], dict)
            and isinstance(checkpoint["provenance"].get("finseq_version"), str)
        ),
        "training": not (
            isinstance(checkpoint.get("training"), dict)
            and {"fold", "seed"} <= set(checkpoint["training"])
        ),
        "ensemble": not (
            isinstance(checkpoint["ensemble"], list)
            and all(
                isinstance(member, dict) and {"seed", "state_dict"} <= set(member)
                for member in checkpoint["ensemble"]
            )
        ),
    }
    wrong = [name for name, problem in problems.items() if problem]
    if wrong:
        raise DataError(
            f"{path}: not a checkpoint finseq wrote: {', '.join(wrong)} missing or malformed; "
            "rebuild it with `dvc repro train` or `dvc pull`"
        )


def _built(
    model_config: ModelConfig,
    checkpoint: dict,
    state_dict: dict,
    path: Path,
    device: torch.device | str,
) -> nn.Module:
    model = build_model(model_config, checkpoint["n_features"])
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: weights do not fit the model config: {reason}") from None
    return model.to(device).eval()


@dataclass(frozen=True)
class Member:
    """One seed's model of a checkpoint, with the record that holds its `calibrations`."""

    seed: int
    model: nn.Module
    record: dict


def load_ensemble(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[list[Member], dict]:
    """Every seed's model of a checkpoint (load_checkpoint's checks), first seed first."""
    model, checkpoint = load_checkpoint(path, device)
    model_config = parse_section(ModelConfig, checkpoint["model_config"], "model")
    members = [Member(checkpoint["training"]["seed"], model, checkpoint)]
    for record in checkpoint["ensemble"]:
        model = _built(model_config, checkpoint, record["state_dict"], Path(path), device)
        members.append(Member(record["seed"], model, record))
    return members, checkpoint
