"""params.yaml parsed once into frozen, typed sections.

Every key is checked by pydantic (strict types, no unknown keys, frozen dataclasses): an
unknown key, a value of the wrong type or out of range raises one ConfigError naming the
dotted key, the value and what is allowed. Code below the stage entry points only ever sees
these dataclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from finseq.errors import ConfigError
from finseq.params_values import each_file_once, lockbox_date
from finseq.params_values import not_allowed as _not_allowed
from finseq.paths import PARAMS_FILE

# Every number must fit the 32-bit types torch and numpy compute with: a learning rate of
# 1e-300 is 0 in float32, and training would silently do nothing.
LARGEST_INTEGER = 2**31 - 1
LARGEST_NUMBER = 1e30
SMALLEST_NUMBER = 1e-30

# Strict: YAML's `true` is no integer and `2.5` no epoch count (an integer is a number).
SECTION = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


# Checked before the type and range checks, so that 1e300 is named as too large rather
# than as out of a field's range.
def _integer_fits(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST_INTEGER:
        raise _not_allowed(f"an integer of magnitude <= {LARGEST_INTEGER}")
    return value


def _number_fits(value: Any) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not abs(float(value)) <= LARGEST_NUMBER:
        raise _not_allowed(f"a finite number of magnitude <= {LARGEST_NUMBER:g}")
    if number and value and abs(float(value)) < SMALLEST_NUMBER:
        raise _not_allowed(f"0 or a number of magnitude >= {SMALLEST_NUMBER:g}")
    return value


Integer = Annotated[int, BeforeValidator(_integer_fits)]
Number = Annotated[float, BeforeValidator(_number_fits)]


def _word_or_integer(word: str, low: int, high: int, expected: str) -> Any:
    """`word`, or an integer from low to high (train.threads, split.history, data.workers)."""

    def check(value: Any) -> Any:
        _integer_fits(value)
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        if value == word or (is_integer and low <= value <= high):
            return value
        raise _not_allowed(expected)

    return Annotated[int | str, BeforeValidator(check)]


LockboxDate = Annotated[str | None, BeforeValidator(lockbox_date)]
Threads = _word_or_integer("auto", 1, 1024, "'auto' or an integer from 1 to 1024")
History = _word_or_integer(
    "expanding", 2, LARGEST_INTEGER, "'expanding' or an integer >= 2 (bars of a rolling window)"
)
Hold = _word_or_integer(
    "horizon", 1, LARGEST_INTEGER, "'horizon' (label.horizon) or an integer >= 1 (bars held)"
)


@dataclass(frozen=True, config=SECTION)
class DataConfig:
    """Raw OHLCV inputs: files, directories or globs (finseq.inputs), CSV or Parquet, one
    series per file or one per symbol of a long-format panel."""

    files: Annotated[tuple[str, ...], Field(strict=False), AfterValidator(each_file_once)]
    workers: Threads
    adjust_volume: bool = True


@dataclass(frozen=True, config=SECTION)
class LabelConfig:
    """How each bar is labelled -1/0/1 from the bars that follow it."""

    method: Literal["fixed_horizon", "triple_barrier"]
    horizon: Annotated[Integer, Field(ge=1)]
    threshold: Annotated[Number, Field(ge=0)]
    vol_window: Annotated[Integer, Field(ge=2)]


@dataclass(frozen=True, config=SECTION)
class SplitConfig:
    """Calendar cuts shared by every series: purged walk-forward folds, or one holdout split."""

    method: Literal["walk_forward", "holdout"]
    embargo: Annotated[Integer, Field(ge=0)]
    train: Annotated[Number, Field(gt=0, lt=1)]
    val: Annotated[Number, Field(gt=0, lt=1)]
    oos_start: Annotated[Number, Field(gt=0, lt=1)]
    folds: Annotated[Integer, Field(ge=1, le=100)]
    history: History
    val_share: Annotated[Number, Field(gt=0, lt=1)]
    lockbox: LockboxDate  # bars from this date on are sealed (finseq.lockbox)
    lockbox_open: bool

    def prepared_view(self) -> dict:
        """Every key but lockbox_open (the prepared meta and checkpoints record these), so
        that opening the lockbox changes no prepared byte."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "lockbox_open"}


@dataclass(frozen=True, config=SECTION)
class WindowConfig:
    seq_len: Annotated[Integer, Field(ge=1)]
    stride: Annotated[Integer, Field(ge=1)]


@dataclass(frozen=True, config=SECTION)
class LightGBMConfig:
    """model.lightgbm: the gradient-boosted trees of `model.type: lightgbm`."""

    num_leaves: Annotated[Integer, Field(ge=2, le=131072)]
    min_data_in_leaf: Annotated[Integer, Field(ge=1)]
    learning_rate: Annotated[Number, Field(gt=0, le=1)]
    max_rounds: Annotated[Integer, Field(ge=1, le=100_000)]
    early_stopping_rounds: Annotated[Integer, Field(ge=1)]
    feature_fraction: Annotated[Number, Field(gt=0, le=1)]
    bagging_fraction: Annotated[Number, Field(gt=0, le=1)]


def _lightgbm_section(value: Any) -> Any:
    """model.lightgbm, parsed as its own section so that an error names the nested key:
    strict pydantic takes no dict for a dataclass, and passes this ConfigError on unchanged."""
    if value is None or isinstance(value, LightGBMConfig):
        return value
    return parse_section(LightGBMConfig, value, "model.lightgbm")


@dataclass(frozen=True, config=SECTION)
class ModelConfig:
    type: Literal["lstm", "gru", "linear", "lightgbm"]
    hidden_dim: Annotated[Integer, Field(ge=1, le=8192)]
    num_layers: Annotated[Integer, Field(ge=1, le=32)]
    dropout: Annotated[Number, Field(ge=0, lt=1)]
    # Optional so that checkpoints written before it existed still load; params.yaml has it,
    # and model.type lightgbm requires it (_check_across_sections).
    lightgbm: Annotated[LightGBMConfig | None, BeforeValidator(_lightgbm_section)] = None


@dataclass(frozen=True, config=SECTION)
class TrainConfig:
    epochs: Annotated[Integer, Field(ge=1)]
    batch_size: Annotated[Integer, Field(ge=1)]
    learning_rate: Annotated[Number, Field(gt=0, le=10)]
    weight_decay: Annotated[Number, Field(ge=0)]
    grad_clip: Annotated[Number, Field(ge=0)]
    patience: Annotated[Integer, Field(ge=1)]
    lr_schedule: Literal["none", "plateau"]
    lr_factor: Annotated[Number, Field(gt=0, lt=1)]
    lr_patience: Annotated[Integer, Field(ge=0)]
    seed: Annotated[Integer, Field(ge=0)]
    seeds: Annotated[Integer, Field(ge=1, le=100)]
    device: Literal["auto", "cpu", "cuda"]
    threads: Threads
    fold_workers: Threads
    processes: Annotated[Integer, Field(ge=1, le=1024)]
    precision: Literal["fp32", "bf16"]


@dataclass(frozen=True, config=SECTION)
class EvaluateConfig:
    batch_size: Annotated[Integer, Field(ge=1)]
    resamples: Annotated[Integer, Field(ge=100, le=100_000)]
    bootstrap_seed: Annotated[Integer, Field(ge=0)]
    calibration: Literal["none", "temperature", "move_direction", "direction"]


@dataclass(frozen=True, config=SECTION)
class BacktestConfig:
    """How out-of-sample probabilities become positions, and what trading them costs."""

    threshold: Annotated[Number, Field(ge=0, le=1)]
    long_only: bool
    cost_bps: Annotated[Number, Field(ge=0, le=10_000)]
    hold: Hold
    sizing: Literal["sign", "score"]
    quantile: Annotated[Number, Field(gt=0, le=0.5)]  # of the series in each cross-section leg

    def hold_bars(self, label_horizon: int) -> int:
        """Bars each position is held: `horizon` holds it as long as the label looks ahead."""
        return label_horizon if self.hold == "horizon" else self.hold


@dataclasses.dataclass(frozen=True)
class Params:
    data: DataConfig
    label: LabelConfig
    split: SplitConfig
    window: WindowConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    backtest: BacktestConfig


TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "tuple_type": "a list of strings",
    "bool_type": "true or false",
}
BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _range_phrase(cls: type, key: str) -> str:
    """'>= 0 and < 1': every bound of the field, as its metadata states them."""
    metadata = cls.__pydantic_fields__[key].metadata
    return " and ".join(
        f"{BOUNDS[name]} {getattr(item, name)}"
        for item in metadata
        for name in BOUNDS
        if hasattr(item, name)
    )


def _message(cls: type, name: str, raw: Mapping, error: dict) -> str:
    """One line for pydantic's error: the dotted key, the value as written, what is allowed."""
    key = str(error["loc"][0])
    dotted, kind = f"{name}.{key}", error["type"]
    if kind == "unexpected_keyword_argument":
        fields = ", ".join(field.name for field in dataclasses.fields(cls))
        return f"{dotted} = {raw[key]!r} is not a known parameter; {name} takes: {fields}"
    if kind == "missing":
        return f"{dotted} is missing from {PARAMS_FILE}"
    value = raw[key]
    if len(error["loc"]) > 1:  # an item of a list of strings
        return f"{dotted} = {value!r} has the wrong type: expected a list of strings"
    if kind == "literal_error" and not isinstance(value, str):
        kind = "string_type"
    if kind in TYPE_NAMES:
        return f"{dotted} = {value!r} has the wrong type: expected {TYPE_NAMES[kind]}"
    if kind == "literal_error":
        choices = cls.__pydantic_fields__[key].annotation.__args__
        expected = f"one of: {', '.join(choices)}"
    elif kind == "not_allowed":
        expected = error["ctx"]["expected"]
    else:
        expected = _range_phrase(cls, key)
    return f"{dotted} = {value!r} is not allowed: expected {expected}"


def parse_section(cls: type, raw: Any, name: str) -> Any:
    """One section (e.g. ModelConfig from the `model` mapping), validated by pydantic."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name} must be a mapping of keys to values, got {raw!r}")
    try:
        return cls(**{str(key): value for key, value in raw.items()})
    except ValidationError as exc:
        errors = exc.errors()
        # An unknown key first: it is most often a misspelling of the key reported missing.
        errors.sort(key=lambda error: error["type"] != "unexpected_keyword_argument")
        raise ConfigError(_message(cls, name, raw, errors[0])) from None


def _check_across_sections(params: Params) -> None:
    train = params.train
    if params.model.type == "lightgbm":
        _check_lightgbm(params.model, train)
    if train.processes > 1 and train.fold_workers not in ("auto", 1):
        raise ConfigError(
            f"train.processes = {train.processes} with train.fold_workers = "
            f"{train.fold_workers}: train the folds side by side or each across processes, "
            "not both; set one of them to 1"
        )
    if params.split.lockbox_open and params.split.lockbox is None:
        raise ConfigError(
            "split.lockbox_open = True with split.lockbox = None: there is no lockbox to open; "
            "set split.lockbox to a date or split.lockbox_open to false"
        )
    if params.split.method == "holdout" and params.split.train + params.split.val >= 1:
        raise ConfigError(
            f"split.train + split.val = {params.split.train} + {params.split.val} leaves no room "
            "for test: their sum must be < 1"
        )
    hold = params.backtest.hold_bars(params.label.horizon)
    if hold > 1 and params.window.stride > 1:
        raise ConfigError(
            f"backtest.hold = {params.backtest.hold} ({hold} bars) with window.stride = "
            f"{params.window.stride}: overlapping positions need a window at every bar, and "
            "the bars between strided windows have no return; set backtest.hold to 1 or "
            "window.stride to 1"
        )


def _check_lightgbm(model: ModelConfig, train: TrainConfig) -> None:
    """What trees cannot do: train across processes or on a GPU, or differ by seed without
    drawing rows or features."""
    if model.lightgbm is None:
        raise ConfigError(
            f"model.lightgbm is missing from {PARAMS_FILE}: model.type = 'lightgbm' reads it"
        )
    if train.processes > 1:
        raise ConfigError(
            f"train.processes = {train.processes} with model.type = 'lightgbm': trees train "
            "in one process (no torch.distributed); set train.processes to 1"
        )
    if train.device == "cuda":
        raise ConfigError(
            "train.device = 'cuda' with model.type = 'lightgbm': LightGBM trains on the CPU "
            "here; set train.device to 'cpu' or 'auto'"
        )
    trees = model.lightgbm
    if train.seeds > 1 and trees.feature_fraction == 1 and trees.bagging_fraction == 1:
        raise ConfigError(
            f"train.seeds = {train.seeds} with model.lightgbm.feature_fraction and "
            "bagging_fraction both 1: every seed would grow the same trees; set train.seeds "
            "to 1 or a fraction below 1"
        )


def parse_params(raw: Any) -> Params:
    """Builds the typed view of an already-loaded params mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{PARAMS_FILE} must be a mapping of sections, got {raw!r}")
    sections = {field.name: field.type for field in dataclasses.fields(Params)}
    for name in raw:
        if name not in sections:
            raise ConfigError(
                f"{name} is not a known section of {PARAMS_FILE}; sections are: "
                f"{', '.join(sections)}"
            )
    missing = [name for name in sections if name not in raw]
    if missing:
        raise ConfigError(f"{PARAMS_FILE} is missing the section(s): {', '.join(missing)}")
    params = Params(
        **{name: parse_section(globals()[kind], raw[name], name) for name, kind in sections.items()}
    )
    _check_across_sections(params)
    return params


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Reads and validates params.yaml; the one way stages get their configuration."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repository root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as text ({exc})") from None
    # DVC's own parser and settings (ruamel.yaml, YAML 1.2), so that a run uses the values
    # `dvc params diff` and `dvc exp show` record: `010` is 10, `yes` and `on` are text (no
    # boolean), `1:30` is text, `1e-4` a float. PyYAML's YAML 1.1 reads all four otherwise.
    from ruamel.yaml import YAML, YAMLError

    try:
        raw = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except ValueError as exc:  # an unquoted date that is none: 2018-13-01
        raise ConfigError(
            f"{path}: a value YAML reads as a date is not a valid date ({exc}); fix or quote it"
        ) from None
    return parse_params(raw)
