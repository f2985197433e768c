"""params.yaml parsed once into frozen, typed sections.

Every key is checked: an unknown key, a value of the wrong type or out of range
raises one ConfigError naming the dotted key, the value and what is allowed.
Code below the stage entry points only ever sees these dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finseq.errors import ConfigError

PARAMS_FILE = "params.yaml"

# Every number must fit the 32-bit types torch and numpy compute with.
LARGEST_INTEGER = 2**31 - 1
LARGEST_NUMBER = 1e30

# A rule takes a parsed value and returns None when it is allowed, else a
# phrase describing what is allowed ("an integer >= 1").
Rule = Callable[[Any], str | None]


def _at_least(low: float) -> Rule:
    return lambda v: None if v >= low else f">= {low}"


def _between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    def rule(v: float) -> str | None:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        if above and below:
            return None
        return f"{'>' if low_open else '>='} {low} and {'<' if high_open else '<='} {high}"

    return rule


def _one_of(*choices: str) -> Rule:
    return lambda v: None if v in choices else f"one of: {', '.join(choices)}"


def _rule(check: Rule | None = None) -> Any:
    return field(metadata={"rule": check})


def _threads(v: Any) -> str | None:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
        return None
    return "'auto' or an integer from 1 to 1024"


def _distinct_files(v: tuple[str, ...]) -> str | None:
    if not v:
        return "a non-empty list of CSV paths"
    seen: set[str] = set()
    for path in v:
        if os.path.normpath(path) in seen:
            return f"each file once ({path!r} is listed twice)"
        seen.add(os.path.normpath(path))
    return None


@dataclass(frozen=True)
class DataConfig:
    """Raw OHLCV CSV files, one series per file."""

    files: tuple[str, ...] = _rule(_distinct_files)


@dataclass(frozen=True)
class LabelConfig:
    """How each bar is labelled -1/0/1 from the bars that follow it."""

    method: str = _rule(_one_of("fixed_horizon", "triple_barrier"))
    horizon: int = _rule(_at_least(1))
    threshold: float = _rule(_at_least(0))
    vol_window: int = _rule(_at_least(2))


def _history(v: Any) -> str | None:
    if v == "expanding" or (isinstance(v, int) and not isinstance(v, bool) and v >= 2):
        return None
    return "'expanding' or an integer >= 2 (bars of a rolling window)"


@dataclass(frozen=True)
class SplitConfig:
    """Calendar cuts shared by every series: purged walk-forward folds, or one holdout split."""

    method: str = _rule(_one_of("walk_forward", "holdout"))
    embargo: int = _rule(_at_least(0))
    train: float = _rule(_between(0, 1, low_open=True, high_open=True))
    val: float = _rule(_between(0, 1, low_open=True, high_open=True))
    oos_start: float = _rule(_between(0, 1, low_open=True, high_open=True))
    folds: int = _rule(_between(1, 100))
    history: int | str = _rule(_history)
    val_share: float = _rule(_between(0, 1, low_open=True, high_open=True))


@dataclass(frozen=True)
class WindowConfig:
    seq_len: int = _rule(_at_least(1))
    stride: int = _rule(_at_least(1))


@dataclass(frozen=True)
class ModelConfig:
    type: str = _rule(_one_of("lstm", "gru", "linear"))
    hidden_dim: int = _rule(_between(1, 8192))
    num_layers: int = _rule(_between(1, 32))
    dropout: float = _rule(_between(0, 1, high_open=True))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _rule(_at_least(1))
    batch_size: int = _rule(_at_least(1))
    learning_rate: float = _rule(_between(0, 10, low_open=True))
    weight_decay: float = _rule(_at_least(0))
    grad_clip: float = _rule(_at_least(0))
    patience: int = _rule(_at_least(1))
    lr_schedule: str = _rule(_one_of("none", "plateau"))
    lr_factor: float = _rule(_between(0, 1, low_open=True, high_open=True))
    lr_patience: int = _rule(_at_least(0))
    seed: int = _rule(_at_least(0))
    seeds: int = _rule(_between(1, 100))
    device: str = _rule(_one_of("auto", "cpu", "cuda"))
    threads: int | str = _rule(_threads)
    fold_workers: int | str = _rule(_threads)
    precision: str = _rule(_one_of("fp32", "bf16"))


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = _rule(_at_least(1))
    resamples: int = _rule(_between(100, 100_000))
    bootstrap_seed: int = _rule(_at_least(0))


@dataclass(frozen=True)
class BacktestConfig:
    """How out-of-sample probabilities become positions, and what trading them costs."""

    threshold: float = _rule(_between(0, 1))
    long_only: bool = _rule()
    cost_bps: float = _rule(_between(0, 10_000))


@dataclass(frozen=True)
class Params:
    data: DataConfig
    label: LabelConfig
    split: SplitConfig
    window: WindowConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    backtest: BacktestConfig


def _type_name(annotation: str) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "tuple[str, ...]": "a list of strings",
        "bool": "true or false",
    }[annotation]


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Checks the YAML value's type; ints are accepted where floats are expected."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "tuple[str, ...]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "bool": isinstance(value, bool),
        # Either a word or an integer: the field's own rule names what is allowed.
        "int | str": True,
    }[annotation]
    if not ok:
        raise ConfigError(
            f"{key} = {value!r} has the wrong type: expected {_type_name(annotation)}"
        )
    if annotation == "float":
        value = float(value)
        if not math.isfinite(value) or abs(value) > LARGEST_NUMBER:
            raise ConfigError(
                f"{key} = {value!r} is not allowed: expected a finite number of magnitude "
                f"<= {LARGEST_NUMBER:g}"
            )
    if isinstance(value, int) and not -LARGEST_INTEGER <= value <= LARGEST_INTEGER:
        raise ConfigError(
            f"{key} = {value!r} is not allowed: expected an integer of magnitude "
            f"<= {LARGEST_INTEGER}"
        )
    if annotation == "tuple[str, ...]":
        value = tuple(value)
    return value


def parse_section(cls: type, raw: Any, name: str) -> Any:
    """One section (e.g. ModelConfig from the `model` mapping), checked key by key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name} must be a mapping of keys to values, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(
                f"{name}.{key} = {raw[key]!r} is not a known parameter; "
                f"{name} takes: {', '.join(fields)}"
            )
    values = {}
    for key, spec in fields.items():
        dotted = f"{name}.{key}"
        if key not in raw:
            raise ConfigError(f"{dotted} is missing from {PARAMS_FILE}")
        value = _coerce(dotted, raw[key], spec.type)
        rule = spec.metadata.get("rule")
        allowed = rule(value) if rule else None
        if allowed:
            raise ConfigError(f"{dotted} = {raw[key]!r} is not allowed: expected {allowed}")
        values[key] = value
    return cls(**values)


def _check_across_sections(params: Params) -> None:
    if params.split.method == "holdout" and params.split.train + params.split.val >= 1:
        raise ConfigError(
            f"split.train + split.val = {params.split.train} + {params.split.val} leaves no room "
            "for test: their sum must be < 1"
        )


def parse_params(raw: Any) -> Params:
    """Builds the typed view of an already-loaded params mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{PARAMS_FILE} must be a mapping of sections, got {raw!r}")
    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    for name in raw:
        if name not in sections:
            raise ConfigError(
                f"{name} is not a known section of {PARAMS_FILE}; sections are: "
                f"{', '.join(sections)}"
            )
    missing = [name for name in sections if name not in raw]
    if missing:
        raise ConfigError(f"{PARAMS_FILE} is missing the section(s): {', '.join(missing)}")
    classes = {f.name: globals()[f.type] for f in dataclasses.fields(Params)}
    params = Params(**{name: parse_section(cls, raw[name], name) for name, cls in classes.items()})
    _check_across_sections(params)
    return params


class _ParamsLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.2 numbers: `1e-4` is a float, as DVC (ruamel.yaml) reads it, not the string
    that PyYAML's YAML 1.1 rules make of it.

    Built on libyaml's parser where PyYAML has it (its wheels do): every stage reads
    params.yaml, and the pure-Python parser takes about 8 ms of a stage's work for it.
    """


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Reads and validates params.yaml; the one way stages get their configuration."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repository root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as text ({exc})") from None
    try:
        raw = yaml.load(text, Loader=_ParamsLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_params(raw)
