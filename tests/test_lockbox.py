"""The lockbox: bars from split.lockbox on reach no default stage, and opening it is one
explicit act that git history counts.

The seal is checked by what it promises, not by how it is built: the raw bars from the
lockbox date on are replaced (prices scaled by random factors) and data/prepared and
data/windows must stay the same bytes; no window of any part ends on or after the date; and
no sample's label looks at a bar from the date on. A planted leak (the series cut after its
labels are computed, not before) is caught by the last two checks
(test_a_leak_planted_by_cutting_after_the_labels_is_caught).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    Project,
    prepare_error_line,
    reproduced_project,
    stage_imports,
    tiny_params,
    tiny_params_dict,
)

from finseq import pipeline
from finseq import prepare as prepare_module
from finseq.artifacts import PreparedData, WindowSets
from finseq.checkpoint import save_checkpoint
from finseq.errors import ConfigError
from finseq.inputs import load_series
from finseq.labels import UNKNOWN_LABEL
from finseq.lockbox import recorded_openings, run_lockbox
from finseq.lockbox_opening import lockbox_figures, lockbox_table
from finseq.params import parse_params
from finseq.paths import LOCKBOX_METRICS, MODEL_FILE, PREPARED_DIR, WINDOWS_DIR
from finseq.saving import fold_checkpoint
from finseq.synthetic import write_panel

# 400 business days from 2000-01-03 end on 2001-07-13: the lockbox seals 97 bars of each.
LOCKBOX = "2001-03-01"
SEALED_PER_SERIES = 97


def raw_panel(directory: Path) -> list[Path]:
    return write_panel(directory, n_series=2, n_bars=400, seed=7)


def tamper_with_the_lockbox(files: list[Path]) -> None:
    """Rewrites `files` in place with the prices of every bar from LOCKBOX on scaled by a
    random factor per bar (OHLC stay consistent) and a random volume."""
    rng = np.random.default_rng(0)
    for path in files:
        frame = pd.read_csv(path, float_precision="round_trip")  # as finseq reads it
        sealed = pd.to_datetime(frame["Date"]) >= pd.Timestamp(LOCKBOX)
        factor = np.exp(rng.normal(0, 0.3, sealed.sum()))
        for column in ("Open", "High", "Low", "Close"):
            frame.loc[sealed, column] *= factor
        frame.loc[sealed, "Volume"] = rng.integers(1, 10**7, sealed.sum())
        frame.to_csv(path, index=False)


def prepared_and_windowed(files: list[Path], root: Path, lockbox: str | None = LOCKBOX):
    """data/prepared and data/windows of `files` under `root`, as the stages save them."""
    params = tiny_params(
        data={"files": [str(path) for path in files], "workers": 1}, split={"lockbox": lockbox}
    )
    data = pipeline.prepare(params)
    windows = pipeline.window(params, data)
    data.save(root / PREPARED_DIR)
    windows.save(root / WINDOWS_DIR)
    return data, windows


def saved_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for directory in (PREPARED_DIR, WINDOWS_DIR)
        for path in sorted((root / directory).iterdir())
    }


def lookahead_into_the_lockbox(data: PreparedData, files: list[Path]) -> list[str]:
    """Every sample (of any fold and part) whose label or forward return reads a bar from
    LOCKBOX on: the bars t+1 .. t+horizon of its series must all lie before the date."""
    horizon = data.meta["label_horizon"]
    cut = np.datetime64(pd.Timestamp(LOCKBOX))
    found = []
    for code, path in enumerate(files):
        stamps = load_series(path).index.to_numpy()
        rows = np.flatnonzero(data.series == code)
        position = np.searchsorted(stamps, data.timestamps[rows])
        reach = np.minimum(position + horizon, len(stamps) - 1)
        reads_lockbox = stamps[reach] >= cut
        sampled = data.samples[:, rows].any(axis=0)
        defined = ~np.isnan(data.forward_return[rows])
        for row in rows[reads_lockbox & (sampled | defined)]:
            found.append(f"{path.name} {pd.Timestamp(data.timestamps[row]).date()}")
    return found


def windows_on_or_after_the_lockbox(data: PreparedData, windows: WindowSets) -> list[str]:
    cut = np.datetime64(pd.Timestamp(LOCKBOX))
    return [
        f"{fold} {part}"
        for fold, parts in windows.ends.items()
        for part, ends in parts.items()
        if (data.timestamps[ends] >= cut).any()
    ]


def test_bars_from_the_lockbox_on_change_no_prepared_or_window_byte(tmp_path: Path):
    files = raw_panel(tmp_path / "raw")
    data, windows = prepared_and_windowed(files, tmp_path / "original")
    unsealed, _ = prepared_and_windowed(files, tmp_path / "unsealed", lockbox=None)
    tamper_with_the_lockbox(files)
    changed, _ = prepared_and_windowed(files, tmp_path / "changed")
    assert saved_bytes(tmp_path / "changed") == saved_bytes(tmp_path / "original")
    assert changed.content_hash == data.content_hash
    assert data.meta["sealed_bars"] == dict.fromkeys(["series_000", "series_001"], 97)
    assert windows_on_or_after_the_lockbox(data, windows) == []
    assert lookahead_into_the_lockbox(data, files) == []
    assert data.timestamps.max() < np.datetime64(pd.Timestamp(LOCKBOX))
    # The control: without a lockbox the same tampering does reach the prepared data.
    tampered_unsealed, _ = prepared_and_windowed(files, tmp_path / "t-unsealed", lockbox=None)
    assert unsealed.content_hash != tampered_unsealed.content_hash
    assert lookahead_into_the_lockbox(unsealed, files) != []


def test_the_last_bars_before_the_lockbox_are_unlabelled_as_at_the_end_of_a_file(tmp_path):
    files = raw_panel(tmp_path / "raw")
    data, _ = prepared_and_windowed(files, tmp_path / "root")
    horizon = data.meta["label_horizon"]
    for code in range(len(files)):
        rows = np.flatnonzero(data.series == code)
        assert np.isnan(data.forward_return[rows[-horizon:]]).all()
        assert np.isfinite(data.forward_return[rows[-horizon - 1]])
        assert np.isnan(data.next_return[rows[-2:]]).all()
        assert not data.samples[:, rows[-horizon:]].any()
    # The same series read from a file that ends the day before the lockbox: the same rows.
    short = tmp_path / "short"
    short.mkdir()
    for path in files:
        frame = pd.read_csv(path, float_precision="round_trip")  # as finseq reads it
        frame[pd.to_datetime(frame["Date"]) < pd.Timestamp(LOCKBOX)].to_csv(
            short / path.name, index=False
        )
    ended, _ = prepared_and_windowed(sorted(short.iterdir()), tmp_path / "ended", lockbox=None)
    for name in ("features", "labels", "forward_return", "next_return", "parts", "samples"):
        np.testing.assert_array_equal(getattr(ended, name), getattr(data, name), err_msg=name)


def test_a_leak_planted_by_cutting_after_the_labels_is_caught(tmp_path, monkeypatch):
    """The planted leak: each series featurised and labelled on the whole file, then its
    arrays cut at the lockbox (the cut after the labels). The last `horizon` labels before
    the date then read sealed bars: the look-ahead check names them, and replacing the
    sealed bars changes the prepared bytes. (Run once by hand with this leak planted in
    prepare.featurise, test_bars_from_the_lockbox_on_change_no_prepared_or_window_byte
    failed at its first assertion, the byte comparison (labels, forward returns and the
    window sets' hash differ), and
    test_the_last_bars_before_the_lockbox_are_unlabelled_as_at_the_end_of_a_file at its
    first, the last `horizon` forward returns before the date being defined.)"""
    featurise = prepare_module.featurise

    def labelled_then_cut(frame, label_config):
        whole = featurise(load_series(frame.attrs["path"]), label_config)
        return type(whole)(**{name: value[: len(frame)] for name, value in vars(whole).items()})

    monkeypatch.setattr(prepare_module, "featurise", labelled_then_cut)
    files = raw_panel(tmp_path / "raw")
    data, _ = prepared_and_windowed(files, tmp_path / "original")
    assert lookahead_into_the_lockbox(data, files) != []
    tamper_with_the_lockbox(files)
    prepared_and_windowed(files, tmp_path / "changed")
    assert saved_bytes(tmp_path / "changed") != saved_bytes(tmp_path / "original")


def test_the_seal_is_the_same_with_files_read_side_by_side(tmp_path: Path):
    files = [str(path) for path in raw_panel(tmp_path / "raw")]
    hashes = set()
    for workers in (1, 2):
        params = tiny_params(data={"files": files, "workers": workers}, split={"lockbox": LOCKBOX})
        data = pipeline.prepare(params)
        assert data.meta["sealed_bars"] == dict.fromkeys(["series_000", "series_001"], 97)
        hashes.add(data.content_hash)
    assert len(hashes) == 1


@pytest.mark.parametrize(
    "value",
    ["2018-13-01", "the end of 2017", "2018-W01", "2018-001", 2018, True, ["2018-01-01"]],
    ids=str,
)
def test_a_lockbox_that_is_no_iso_date_is_refused_in_one_line(value):
    with pytest.raises(ConfigError) as raised:
        parse_params(tiny_params_dict(split={"lockbox": value}))
    message = str(raised.value)
    assert message.startswith(f"split.lockbox = {value!r} is not allowed: expected an ISO date")
    assert "\n" not in message


@pytest.mark.parametrize("value", ["9999-12-31", "1600-01-01"])
def test_a_lockbox_date_beyond_nanosecond_timestamps_is_refused(value):
    with pytest.raises(ConfigError) as raised:
        parse_params(tiny_params_dict(split={"lockbox": value}))
    assert str(raised.value) == (
        f"split.lockbox = {value!r} is not allowed: expected a date from 1678 to 2261 (what "
        "nanosecond timestamps hold)"
    )


def test_an_unquoted_yaml_date_is_read_as_its_iso_string():
    """YAML (and `dvc exp run -S split.lockbox=2018-01-01`) reads an unquoted date as a date."""
    raw = tiny_params_dict()
    text = yaml.safe_dump(raw).replace("lockbox: null", "lockbox: 2018-01-01")
    assert parse_params(yaml.safe_load(text)).split.lockbox == "2018-01-01"


@pytest.mark.parametrize("labelled_dates", [0, 2, 19])
def test_an_opened_lockbox_of_too_few_labelled_dates_is_refused_not_spent(labelled_dates):
    """Two scored bars gave a Sharpe of 17; none crashed the figures. Under 20 dates with a
    known label, the opening is refused with the date to move."""
    dates = pd.bdate_range("2018-12-03", periods=24)
    labels = np.where(np.arange(24) < labelled_dates, 1.0, np.nan)
    table = pd.DataFrame({"series": "a", "timestamp": dates, "label": labels})
    params = tiny_params(split={"lockbox": "2018-12-03"})
    with pytest.raises(ConfigError) as raised:
        lockbox_figures(table, params)
    assert str(raised.value) == (
        f"split.lockbox = '2018-12-03' leaves {labelled_dates} sealed date(s) with a known "
        f"label (the last label.horizon = {params.label.horizon} bars of a file have none); "
        "an opened lockbox needs at least 20: choose an earlier date"
    )


def test_opening_no_lockbox_is_refused():
    with pytest.raises(ConfigError, match=r"^split.lockbox_open = True with split.lockbox = None"):
        parse_params(tiny_params_dict(split={"lockbox_open": True}))


@pytest.mark.parametrize(
    ("lockbox", "expected"),
    [
        ("2030-01-01", "is after the last bar of every series: it seals nothing"),
        ("2000-02-01", "only 21 bars before it; at least 64 are needed"),
        ("2000-05-01", "(over the bars before split.lockbox = '2000-05-01')"),
    ],
)
def test_a_lockbox_that_seals_nothing_or_leaves_too_little_names_split_lockbox(
    tmp_path, lockbox, expected
):
    files = [str(path) for path in raw_panel(tmp_path / "raw")]
    params = tiny_params(data={"files": files, "workers": 1}, split={"lockbox": lockbox})
    with pytest.raises(ConfigError) as raised:
        pipeline.prepare(params)
    assert "split.lockbox" in str(raised.value) and expected in str(raised.value)


def test_the_prepare_stage_stops_on_a_lockbox_after_every_bar_with_exit_2(tmp_path: Path):
    files = raw_panel(tmp_path / "data" / "raw")
    raw = tiny_params_dict(split={"lockbox": "2030-01-01"})
    raw["data"]["files"] = [str(path.relative_to(tmp_path)) for path in files]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert prepare_error_line(tmp_path).startswith("error: split.lockbox = '2030-01-01'")


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-C", str(root), *args],
        check=True,
        capture_output=True,
    )


def commit_metrics(root: Path, report: dict, message: str) -> None:
    (root / LOCKBOX_METRICS).parent.mkdir(parents=True, exist_ok=True)
    (root / LOCKBOX_METRICS).write_text(json.dumps(report))
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)


def test_openings_are_counted_from_git_history_on_every_ref_each_file_once(tmp_path: Path):
    assert recorded_openings(tmp_path) is None  # no git repository: nothing to count from
    git(tmp_path, "init", "-q", "-b", "main")
    assert recorded_openings(tmp_path) == 0
    commit_metrics(tmp_path, {"opened": False, "openings": 0}, "sealed")
    commit_metrics(tmp_path, {"opened": True, "openings": 1, "skill": 0.1}, "opened once")
    commit_metrics(tmp_path, {"opened": False, "openings": 1}, "sealed again")
    git(tmp_path, "checkout", "-q", "-b", "experiment")
    commit_metrics(tmp_path, {"opened": True, "openings": 2, "skill": 0.2}, "opened twice")
    git(tmp_path, "checkout", "-q", "main")
    # The first opening's file committed again on main: the same opening, counted once.
    commit_metrics(tmp_path, {"opened": True, "openings": 1, "skill": 0.1}, "re-recorded")
    assert recorded_openings(tmp_path) == 2


def test_the_sealed_stage_reads_no_bar_and_says_so(tmp_path: Path, monkeypatch):
    git(tmp_path, "init", "-q", "-b", "main")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        "finseq.lockbox_opening.read_sources", lambda *_, **__: pytest.fail("read a bar")
    )
    params = tiny_params(split={"lockbox": LOCKBOX})
    assert run_lockbox(params) == {"date": LOCKBOX, "opened": False, "openings": 0}
    assert json.loads(Path(LOCKBOX_METRICS).read_text())["opened"] is False


def test_the_sealed_stage_loads_no_scoring_machinery(tmp_path: Path):
    """Sealed (the default), the stage process imports neither torch nor the bootstraps nor
    the opening's code: it runs in under a second, not the five that importing them takes."""
    git(tmp_path, "init", "-q", "-b", "main")
    params = tiny_params_dict(split={"lockbox": LOCKBOX})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, loaded = stage_imports(
        tmp_path, "lockbox", ("torch", "arch", "pandas", "finseq.lockbox_opening")
    )
    assert result.returncode == 0, result.stderr
    assert loaded == []
    written = json.loads((tmp_path / LOCKBOX_METRICS).read_text())
    assert written == {"date": LOCKBOX, "opened": False, "openings": 0}


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory) -> Path:
    """A project root with data/prepared, data/windows and models/model.pth of a tiny panel
    sealed at LOCKBOX, in a git repository."""
    root = tmp_path_factory.mktemp("lockbox")
    files = raw_panel(root / "data" / "raw")
    relative = [str(path.relative_to(root)) for path in files]
    params = tiny_params(
        data={"files": [str(path) for path in files], "workers": 1}, split={"lockbox": LOCKBOX}
    )
    data, windows = prepared_and_windowed(files, root)
    fold = data.meta["model_fold"]
    model, result = pipeline.train_fold(params, data, windows, fold, torch.device("cpu"))
    save_checkpoint(fold_checkpoint(model, result, data, windows, fold, params), root / MODEL_FILE)
    raw = tiny_params_dict(split={"lockbox": LOCKBOX, "lockbox_open": True})
    raw["data"]["files"] = relative
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "trained")
    return root


@pytest.mark.slow
def test_opening_scores_only_the_sealed_bars_and_counts_each_opening(trained_root, monkeypatch):
    monkeypatch.chdir(trained_root)
    params = parse_params(yaml.safe_load(Path("params.yaml").read_text()))
    table, model_md5 = lockbox_table(params, Path())
    assert (table["timestamp"] >= pd.Timestamp(LOCKBOX)).all()
    assert len(table) == 2 * SEALED_PER_SERIES
    assert table["label"].isna().sum() >= 2 * params.label.horizon  # the files' last bars
    assert (table["label"].dropna() != UNKNOWN_LABEL).all()
    report = run_lockbox(params)
    assert report["opened"] is True and report["openings"] == 1
    assert report["model_md5"] == model_md5
    figures = report["lockbox"]
    assert figures["windows"] == 2 * SEALED_PER_SERIES
    assert figures["first_date"] >= LOCKBOX
    for key in ("loss", "accuracy", "skill", "move_skill", "direction_skill", "sharpe"):
        assert np.isfinite(figures[key]), key
    assert json.loads(Path(LOCKBOX_METRICS).read_text()) == report
    git(trained_root, "add", "-A")
    git(trained_root, "commit", "-q", "-m", "opened the lockbox")
    assert run_lockbox(params)["openings"] == 2


@pytest.mark.slow
def test_a_model_trained_with_another_lockbox_is_not_scored_on_it(trained_root, monkeypatch):
    monkeypatch.chdir(trained_root)
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["split"]["lockbox"] = "2001-01-02"
    with pytest.raises(ConfigError, match=r"was trained with split\.lockbox = '2001-03-01'"):
        lockbox_table(parse_params(raw), Path())


@pytest.mark.slow
def test_dvc_exp_run_opens_the_lockbox_and_reruns_only_the_lockbox_stage(
    reproduced_template, tmp_path
):
    project: Project = reproduced_project(reproduced_template, tmp_path / "repo")
    sealed = json.loads((project.path / LOCKBOX_METRICS).read_text())
    assert sealed == {"date": None, "opened": False, "openings": 0}
    params = project.read_params()
    params["split"]["lockbox"] = LOCKBOX
    project.write_params(params)
    project.run("dvc", "repro")
    project.commit("a lockbox")
    assert json.loads((project.path / "metrics" / "data.json").read_text())["lockbox"] == {
        "date": LOCKBOX,
        "sealed_bars": dict.fromkeys(["series_000", "series_001"], SEALED_PER_SERIES),
    }
    output = project.run("dvc", "exp", "run", "-S", "split.lockbox_open=true").stdout
    assert "Running stage 'lockbox'" in output
    assert "Running stage 'prepare'" not in output and "Running stage 'train'" not in output
    opened = json.loads((project.path / LOCKBOX_METRICS).read_text())
    assert opened["opened"] is True and opened["openings"] == 1
    assert opened["lockbox"]["windows"] == 2 * SEALED_PER_SERIES
    # The experiment's commit holds the opening: the next one counts it.
    assert recorded_openings(project.path) == 1
