"""Bad parameters stop a stage before any work, with one line naming the key, value and rule.

Three layers: parse_params/load_params directly; the real stage entry points run as
subprocesses on a project's params.yaml; and `dvc exp run -S`, the way users mistype them.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from conftest import Project, merge, reproduced_project, stage_imports, tiny_params_dict

from finseq.errors import ConfigError
from finseq.params import load_params, parse_params

BAD_PARAMS = [
    pytest.param(
        {"model": {"hiden_dim": 32}},
        ["model.hiden_dim = 32", "not a known parameter", "type, hidden_dim, num_layers, dropout"],
        id="unknown-key",
    ),
    pytest.param(
        {"train": {"epochs": "ten"}},
        ["train.epochs = 'ten'", "wrong type", "expected an integer"],
        id="string-for-int",
    ),
    pytest.param(
        {"train": {"epochs": 2.5}},
        ["train.epochs = 2.5", "wrong type", "expected an integer"],
        id="float-for-int",
    ),
    pytest.param(
        {"train": {"learning_rate": True}},
        ["train.learning_rate = True", "wrong type", "expected a number"],
        id="bool-for-float",
    ),
    pytest.param(
        {"model": {"type": "transformer"}},
        ["model.type = 'transformer'", "one of: lstm, gru, linear"],
        id="unknown-model-type",
    ),
    pytest.param(
        {"window": {"seq_len": 0}},
        ["window.seq_len = 0", "expected >= 1"],
        id="zero-seq-len",
    ),
    pytest.param(
        {"train": {"batch_size": -64}},
        ["train.batch_size = -64", "expected >= 1"],
        id="negative-batch-size",
    ),
    pytest.param(
        {"split": {"train": 0.0}},
        ["split.train = 0.0", "expected > 0 and < 1"],
        id="no-room-for-train",
    ),
    pytest.param(
        {"split": {"method": "holdout", "train": 0.9, "val": 0.1}},
        ["split.train + split.val = 0.9 + 0.1", "no room for test", "sum must be < 1"],
        id="no-room-for-test",
    ),
    pytest.param(
        {"backtest": {"cost_bps": -1}},
        ["backtest.cost_bps = -1", "expected >= 0 and <= 10000"],
        id="negative-cost",
    ),
    pytest.param(
        {"backtest": {"threshold": 1.5}},
        ["backtest.threshold = 1.5", "expected >= 0 and <= 1"],
        id="threshold-above-one",
    ),
    pytest.param(
        {"backtest": {"long_only": "yes"}},
        ["backtest.long_only = 'yes'", "expected true or false"],
        id="long-only-word",
    ),
    pytest.param(
        {"split": {"method": "kfold"}},
        ["split.method = 'kfold'", "one of: walk_forward, holdout"],
        id="split-method",
    ),
    pytest.param(
        {"split": {"history": "rolling"}},
        ["split.history = 'rolling'", "'expanding' or an integer >= 2"],
        id="split-history-word",
    ),
    pytest.param(
        {"split": {"history": 1}},
        ["split.history = 1", "'expanding' or an integer >= 2"],
        id="split-history-one",
    ),
    pytest.param(
        {"split": {"folds": 0}},
        ["split.folds = 0", "expected >= 1 and <= 100"],
        id="split-no-folds",
    ),
    pytest.param(
        {"split": {"oos_start": 1.0}},
        ["split.oos_start = 1.0", "expected > 0 and < 1"],
        id="split-oos-start",
    ),
    pytest.param(
        {"split": {"val_share": 0}},
        ["split.val_share = 0", "expected > 0 and < 1"],
        id="split-val-share",
    ),
    pytest.param(
        {"label": {"method": "quantile"}},
        ["label.method = 'quantile'", "one of: fixed_horizon, triple_barrier"],
        id="unknown-label-method",
    ),
    pytest.param(
        {"train": {"device": "tpu"}},
        ["train.device = 'tpu'", "one of: auto, cpu, cuda"],
        id="unknown-device",
    ),
    pytest.param(
        {"train": {"threads": 0}},
        ["train.threads = 0", "'auto' or an integer from 1 to 1024"],
        id="zero-threads",
    ),
    pytest.param(
        {"model": {"dropout": 1.0}},
        ["model.dropout = 1.0", ">= 0 and < 1"],
        id="dropout-one",
    ),
    pytest.param(
        {"train": {"learning_rate": float("nan")}},
        ["train.learning_rate = nan", "a finite number"],
        id="nan-learning-rate",
    ),
    pytest.param(
        {"train": {"learning_rate": 1e300}},
        ["train.learning_rate = 1e+300", "a finite number of magnitude <= 1e+30"],
        id="huge-learning-rate",
    ),
    pytest.param(
        {"train": {"learning_rate": 1e-300}},
        ["train.learning_rate = 1e-300", "0 or a number of magnitude >= 1e-30"],
        id="underflowing-learning-rate",
    ),
    pytest.param(
        {"train": {"seed": 2**64}},
        ["train.seed = 18446744073709551616", "an integer of magnitude <= 2147483647"],
        id="huge-seed",
    ),
    pytest.param(
        {"model": {"hidden_dim": 100_000}},
        ["model.hidden_dim = 100000", ">= 1 and <= 8192"],
        id="huge-hidden-dim",
    ),
    pytest.param(
        {"data": {"files": "data/raw/sp500.csv"}},
        ["data.files = 'data/raw/sp500.csv'", "expected a list of strings"],
        id="file-not-in-a-list",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_PARAMS)
def test_parse_params_names_the_key_the_value_and_what_is_allowed(overrides, expected):
    with pytest.raises(ConfigError) as raised:
        parse_params(tiny_params_dict(**overrides))
    message = str(raised.value)
    for fragment in expected:
        assert fragment in message
    assert "\n" not in message


def test_a_misspelt_section_is_refused_with_the_list_of_sections():
    raw = tiny_params_dict()
    raw["modle"] = {"hidden_dim": 32}
    with pytest.raises(ConfigError, match=r"^modle is not a known section .*model, train"):
        parse_params(raw)


def test_a_missing_key_is_named():
    raw = tiny_params_dict()
    del raw["train"]["patience"]
    with pytest.raises(ConfigError, match=r"^train\.patience is missing from params\.yaml$"):
        parse_params(raw)


def test_load_params_reports_a_missing_file_and_invalid_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  type: [lstm\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML") as raised:
        load_params(broken)
    assert "\n" not in str(raised.value)


def test_load_params_reports_a_path_that_is_not_a_readable_text_file(tmp_path: Path):
    (tmp_path / "params.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"params\.yaml: cannot be read as text"):
        load_params(tmp_path / "params.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(ConfigError, match=r"binary\.yaml: cannot be read as text"):
        load_params(binary)


def test_load_params_reads_exponent_notation_as_a_number_like_dvc_does(tmp_path: Path):
    """PyYAML alone reads `1e-4` as a string; DVC's YAML 1.2 parser reads a float."""
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(tiny_params_dict(train={"learning_rate": "LR"}))
    path.write_text(text.replace("learning_rate: LR", "learning_rate: 1e-4"))
    assert load_params(path).train.learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("key", "spelling"),
    [
        ("train.epochs", "010"),
        ("train.epochs", "1_0"),
        ("train.epochs", "0x0A"),
        ("train.epochs", "1:30"),
        ("split.lockbox_open", "yes"),
        ("backtest.long_only", "on"),
        ("data.adjust_volume", "no"),
        ("split.lockbox", "2018-01-01"),
    ],
)
def test_params_yaml_is_read_as_dvc_reads_it(tmp_path: Path, key: str, spelling: str):
    """A run uses the values `dvc params diff` and `dvc exp show` record: DVC's YAML 1.2
    reads `010` as 10 (PyYAML's 1.1: 8) and `yes` as text (1.1: true), which a boolean key
    then refuses, rather than opening the lockbox on a value DVC records as 'yes'."""
    from dvc.utils.serialize import parse_yaml

    section, name = key.split(".")
    raw = tiny_params_dict()
    text = yaml.safe_dump(raw).replace(f"  {name}: ", f"  {name}: {spelling} #", 1)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    as_dvc_reads_it = parse_yaml(text, str(path))[section][name]
    try:
        value = getattr(getattr(load_params(path), section), name)
    except ConfigError as refused:
        assert isinstance(as_dvc_reads_it, str), refused
        assert str(refused).startswith(f"{key} = {as_dvc_reads_it!r} has the wrong type")
    else:
        assert value == (as_dvc_reads_it.isoformat() if key == "split.lockbox" else as_dvc_reads_it)


def test_an_unquoted_date_that_is_no_date_is_one_line(tmp_path: Path):
    text = yaml.safe_dump(tiny_params_dict(split={"lockbox": "LOCKBOX"}))
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("'LOCKBOX'", "2018-13-01").replace("LOCKBOX", "2018-13-01"))
    with pytest.raises(ConfigError) as raised:
        load_params(path)
    assert str(raised.value) == (
        f"{path}: a value YAML reads as a date is not a valid date (month must be in 1..12); "
        "fix or quote it"
    )


@pytest.mark.parametrize("stage", ["prepare", "window", "train", "evaluate", "lockbox"])
def test_a_bad_param_stops_each_stage_before_it_imports_its_code(tmp_path: Path, stage):
    """The params are checked first: a typo costs half a second, not the import of torch."""
    params = tiny_params_dict(train={"epochs": "ten"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, loaded = stage_imports(
        tmp_path, stage, ("torch", "arch", "scipy", "pandas", "finseq.artifacts")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: train.epochs = 'ten' has the wrong type: expected an integer"
    )
    assert loaded == []


@pytest.fixture(scope="module")
def reproduced(reproduced_template, tmp_path_factory) -> Project:
    """This module's own copy of the reproduced tiny project: every test here puts back what
    it changes (params_changed, restore_last_commit), so later tests find it at its last
    commit; no other module's tests see it."""
    project = reproduced_project(reproduced_template, tmp_path_factory.mktemp("params") / "repo")
    yield project
    assert project.run("git", "status", "--porcelain", "--untracked-files=no").stdout == ""
    assert "up to date" in project.run("dvc", "status").stdout


@contextmanager
def params_changed(project: Project, **overrides: dict) -> Iterator[None]:
    original = (project.path / "params.yaml").read_text()
    project.write_params(merge(project.read_params(), overrides))
    try:
        yield
    finally:
        (project.path / "params.yaml").write_text(original)


def run_stage(project: Project, stage: str) -> subprocess.CompletedProcess:
    return project.run("python", "-m", f"finseq.stages.{stage}", check=False)


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, no traceback, and stderr is exactly one `error: ...` line."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.returncode == 2
    return lines[0]


STAGE_CASES = [
    pytest.param(
        "train", {"model": {"hiden_dim": 32}}, ["model.hiden_dim = 32", "hidden_dim"], id="unknown"
    ),
    pytest.param(
        "train", {"train": {"epochs": "ten"}}, ["train.epochs = 'ten'", "an integer"], id="type"
    ),
    pytest.param(
        "train",
        {"model": {"type": "transformer"}},
        ["model.type = 'transformer'", "lstm, gru, linear"],
        id="model-type",
    ),
    pytest.param("window", {"window": {"seq_len": 0}}, ["window.seq_len = 0", ">= 1"], id="seq0"),
    pytest.param(
        "train", {"train": {"batch_size": -1}}, ["train.batch_size = -1", ">= 1"], id="batch"
    ),
    pytest.param(
        "prepare",
        {"split": {"method": "holdout", "train": 0.001}},
        ["split.train = 0.001", "leave a split empty", "at least one bar"],
        id="split-no-train",
    ),
    pytest.param(
        "prepare",
        {"label": {"method": "quantile"}},
        ["label.method = 'quantile'", "fixed_horizon, triple_barrier"],
        id="label-method",
    ),
    pytest.param(
        "window",
        {"window": {"seq_len": 200}},
        ["window.seq_len = 200", "no train windows in fold f1", "raise split.oos_start"],
        id="seq-longer-than-first-fold",
    ),
    pytest.param(
        "window",
        {"window": {"seq_len": 500}},
        ["series_000.csv: only 400 bars", "window.seq_len (500)"],
        id="seq-longer-than-series",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "overrides", "expected"), STAGE_CASES)
def test_a_stage_stops_on_a_bad_param_with_one_error_line(reproduced, stage, overrides, expected):
    with params_changed(reproduced, **overrides):
        result = run_stage(reproduced, stage)
    assert_one_error_line(result, *expected)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible, so cuda is allowed")
def test_train_refuses_cuda_without_a_gpu(reproduced):
    with params_changed(reproduced, train={"device": "cuda"}):
        result = run_stage(reproduced, "train")
    assert_one_error_line(result, "train.device = 'cuda'", "no CUDA GPU", "'auto' or 'cpu'")


def restore_last_commit(project: Project) -> None:
    """What a user does after a failed experiment: params and metrics from git, outs from cache."""
    project.run("git", "checkout", "--", "params.yaml", "dvc.lock", "metrics")
    project.run("dvc", "checkout")
    assert "up to date" in project.run("dvc", "status").stdout


@pytest.mark.slow
def test_dvc_exp_run_refuses_to_set_a_key_that_params_yaml_lacks(reproduced):
    """DVC's own check: `-S` may only change keys that exist; nothing runs, nothing changes."""
    before = (reproduced.path / "params.yaml").read_text()
    result = reproduced.run("dvc", "exp", "run", "-S", "model.hiden_dim=32", check=False)
    assert result.returncode != 0
    assert "Could not override 'model.hiden_dim'" in result.stderr + result.stdout
    assert "Running stage" not in result.stdout
    assert (reproduced.path / "params.yaml").read_text() == before


@pytest.mark.slow
def test_dvc_exp_run_adding_a_misspelt_key_fails_in_the_stage_that_reads_it(reproduced):
    """`-S +model.hiden_dim=32` adds the key; `model` changed, so train reruns and refuses it."""
    try:
        result = reproduced.run("dvc", "exp", "run", "-S", "+model.hiden_dim=32", check=False)
        assert result.returncode != 0
        assert "Running stage 'train'" in result.stdout
        output = result.stdout + result.stderr
        assert "error: model.hiden_dim = 32 is not a known parameter" in output
        assert "Traceback" not in output
    finally:
        restore_last_commit(reproduced)


@pytest.mark.slow
def test_dvc_exp_run_adding_a_misspelt_section_reruns_nothing_but_the_next_stage_refuses_it(
    reproduced,
):
    """No stage declares `modle`, so DVC finds nothing changed and records the experiment.

    DVC cannot catch this; the params file is then refused by whichever stage runs next.
    """
    try:
        result = reproduced.run("dvc", "exp", "run", "-S", "+modle.hidden_dim=32")
        assert "Running stage" not in result.stdout
        assert "modle:" in (reproduced.path / "params.yaml").read_text()
        assert_one_error_line(run_stage(reproduced, "evaluate"), "modle is not a known section")
    finally:
        restore_last_commit(reproduced)


@pytest.mark.slow
def test_an_evaluation_knob_reruns_evaluate_only_and_a_speed_knob_nothing(reproduced):
    try:
        evaluated = reproduced.run("dvc", "exp", "run", "-S", "evaluate.batch_size=1024").stdout
        assert "Running stage 'evaluate'" in evaluated
        assert "Running stage 'train'" not in evaluated
        restore_last_commit(reproduced)
        threads = reproduced.run("dvc", "exp", "run", "-S", "train.threads=1").stdout
        assert "Running stage" not in threads
    finally:
        restore_last_commit(reproduced)


def test_a_file_listed_twice_in_data_files_is_refused():
    raw = tiny_params_dict()
    raw["data"]["files"] = ["data/raw/a.csv", "data/raw/b.csv", "./data/raw/a.csv"]
    with pytest.raises(ConfigError) as raised:
        parse_params(raw)
    assert str(raised.value) == (
        "data.files = ['data/raw/a.csv', 'data/raw/b.csv', './data/raw/a.csv'] is not allowed: "
        "expected each file once ('./data/raw/a.csv' is listed twice)"
    )


def test_every_section_is_a_strict_frozen_pydantic_dataclass_forbidding_unknown_keys():
    """The rules live in pydantic's declarations, not in a hand-written engine."""
    params = parse_params(tiny_params_dict())
    for field in dataclasses.fields(params):
        section = getattr(params, field.name)
        config = type(section).__pydantic_config__
        assert config["strict"] and config["extra"] == "forbid", field.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, dataclasses.fields(section)[0].name, None)


def test_each_declared_bound_is_named_when_a_value_breaks_it():
    """For every numeric field with bounds: a value just past each bound gives the one-line
    message with all of the field's bounds, e.g. `expected > 0 and < 1`."""
    params = parse_params(tiny_params_dict())
    checked = 0
    for section_field in dataclasses.fields(params):
        section = type(getattr(params, section_field.name))
        for name, info in section.__pydantic_fields__.items():
            bounds = {
                symbol: getattr(item, attribute)
                for item in info.metadata
                for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                if hasattr(item, attribute)
            }
            if not bounds:
                continue
            phrase = " and ".join(f"{symbol} {value}" for symbol, value in bounds.items())
            for symbol, value in bounds.items():
                step = 1 if isinstance(value, int) and not isinstance(value, float) else 0.5
                bad = (
                    value
                    if symbol in (">", "<")
                    else value + (-step if "<" not in symbol else step)
                )
                raw = tiny_params_dict(**{section_field.name: {name: bad}})
                with pytest.raises(ConfigError) as raised:
                    parse_params(raw)
                assert str(raised.value) == (
                    f"{section_field.name}.{name} = {bad!r} is not allowed: expected {phrase}"
                )
                checked += 1
    assert checked >= 30
