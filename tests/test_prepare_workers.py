"""data.workers: files read and featurised side by side give one worker's bytes, notes and
first error."""

from __future__ import annotations

import hashlib
import multiprocessing

import pandas as pd
import pytest
from conftest import tiny_params

import finseq.prepare as prepare_module
import finseq.runtime as runtime_module
from finseq.errors import DataError
from finseq.panel import prepare_dataset
from finseq.prepare import read_series
from finseq.runtime import resolve_data_workers
from finseq.synthetic import write_long_panel, write_panel


def prepared_files(directory) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def with_a_hole(path) -> None:
    """Drops 60 bars in the middle: load notes a long gap, naming its line."""
    frame = pd.read_csv(path)
    frame.drop(index=range(200, 260)).to_csv(path, index=False)


def test_two_workers_prepare_the_bytes_and_notes_of_one(tmp_path, capsys):
    files = [str(path) for path in write_panel(tmp_path / "raw", n_series=5, n_bars=400)]
    with_a_hole(files[1])
    with_a_hole(files[3])
    params = tiny_params()
    printed, written = {}, {}
    for workers in (1, 2, 3):
        frames, featurised = read_series(files, params.label, workers)
        assert list(frames) == files
        prepared = prepare_dataset(frames, params.label, params.split, featurised)
        prepared.save(tmp_path / f"prepared-{workers}")
        written[workers] = prepared_files(tmp_path / f"prepared-{workers}")
        printed[workers] = capsys.readouterr().err
    assert "features.npy" in written[1]
    assert written[2] == written[3] == written[1]
    # Notes in file order: series_001's before series_003's, as one worker prints them.
    assert printed[1].index("series_001.csv: line") < printed[1].index("series_003.csv: line")
    assert printed[2] == printed[3] == printed[1]


def test_features_computed_in_the_pool_equal_those_computed_in_prepare(tmp_path):
    files = [str(path) for path in write_panel(tmp_path / "raw", n_series=3, n_bars=300)]
    params = tiny_params()
    frames, featurised = read_series(files, params.label, 2)
    pooled = prepare_dataset(frames, params.label, params.split, featurised)
    in_place = prepare_dataset(frames, params.label, params.split)
    assert pooled.content_hash == in_place.content_hash


def test_the_first_bad_file_in_file_order_is_the_error_whatever_the_workers(tmp_path):
    files = [str(path) for path in write_panel(tmp_path / "raw", n_series=4, n_bars=300)]
    pd.read_csv(files[1]).drop(columns="Volume").to_csv(files[1], index=False)
    (tmp_path / "raw" / "series_002.csv").write_text("")
    params = tiny_params()
    messages = set()
    for workers in (1, 2, 4):
        with pytest.raises(DataError) as raised:
            read_series(files, params.label, workers)
        messages.add(str(raised.value))
    assert len(messages) == 1
    assert messages.pop().startswith(f"{files[1]}: ")


def test_data_workers_auto_is_one_in_dvc_workspaces_and_else_the_cores_up_to_the_files(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(runtime_module, "usable_cores", lambda: 8)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_workers("auto", 100) == 8
    assert resolve_data_workers("auto", 3) == 3
    assert resolve_data_workers(2, 100) == 2
    assert resolve_data_workers(16, 5) == 5
    queued = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "run" / "abc"
    queued.mkdir(parents=True)
    monkeypatch.chdir(queued)
    assert resolve_data_workers("auto", 100) == 1
    assert resolve_data_workers(4, 100) == 4


def test_one_panels_series_are_shared_out_and_prepare_the_bytes_notes_and_error_of_one(
    tmp_path, capsys, monkeypatch
):
    """With fewer files than workers (one panel), the parent reads and splits the file and
    each series is a task of the pool: the same bytes, notes and first error as one
    process, and the pool really had the processes asked for."""
    panel = write_long_panel(tmp_path / "panel.csv", n_series=5, n_bars=400)
    frame = pd.read_csv(panel, float_precision="round_trip")
    holes = frame.index[frame["Symbol"].isin(["S001", "S003"])][200:260]
    frame.drop(index=holes).to_csv(panel, index=False)
    pools = []
    context = multiprocessing.get_context("fork")

    class RecordingContext:
        def Pool(self, processes, *args):
            pools.append(processes)
            return context.Pool(processes, *args)

    monkeypatch.setattr(prepare_module.multiprocessing, "get_context", lambda _: RecordingContext())
    params = tiny_params()
    printed, written = {}, {}
    for workers in (1, 2, 3):
        frames, featurised = read_series([str(panel)], params.label, workers)
        assert list(frames) == [f"{panel}::S{index:03d}" for index in range(5)]
        prepared = prepare_dataset(frames, params.label, params.split, featurised)
        prepared.save(tmp_path / f"prepared-{workers}")
        written[workers] = prepared_files(tmp_path / f"prepared-{workers}")
        printed[workers] = capsys.readouterr().err
    assert pools == [2, 3]
    assert written[2] == written[3] == written[1]
    assert printed[1].index("::S001: line") < printed[1].index("::S003: line")
    assert printed[2] == printed[3] == printed[1]

    frame.loc[frame["Symbol"] == "S002", "Volume"] = -1.0
    frame.loc[frame["Symbol"] == "S004", "Close"] = -1.0
    frame.to_csv(panel, index=False)
    messages = set()
    for workers in (1, 2, 4):
        with pytest.raises(DataError) as raised:
            read_series([str(panel)], params.label, workers)
        messages.add(str(raised.value))
    assert len(messages) == 1
    assert messages.pop().startswith(f"{panel}::S002: ")


def test_with_fewer_files_than_workers_a_read_error_waits_for_the_files_before_it(tmp_path):
    """The parent reads every file before the pool validates any: a later file that cannot
    be read is still reported only after the earlier files' own errors, as in order."""
    files = [str(path) for path in write_panel(tmp_path / "raw", n_series=1, n_bars=300)]
    frame = pd.read_csv(files[0], float_precision="round_trip")
    frame.loc[50, "Close"] = -1.0
    frame.to_csv(files[0], index=False)
    params = tiny_params()
    for workers in (1, 3):
        with pytest.raises(DataError) as raised:
            read_series([files[0], str(tmp_path / "missing.csv")], params.label, workers)
        assert str(raised.value).startswith(f"{files[0]}: line 52"), workers
