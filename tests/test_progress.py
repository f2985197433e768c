"""Progress on stderr: quiet for quick work, a bounded number of plain lines in a log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, VENV_BIN, dvc_environment, tiny_params_dict

from finseq import progress
from finseq.progress import Progress, tracked
from finseq.synthetic import write_panel


def test_quick_work_prints_nothing(capsys, monkeypatch):
    monkeypatch.delenv("FINSEQ_PROGRESS", raising=False)
    assert list(tracked(range(1000), 1000, "work", "items")) == list(range(1000))
    assert capsys.readouterr().err == ""


def test_slow_work_off_a_terminal_prints_one_line_per_tenth(capsys, monkeypatch):
    monkeypatch.delenv("FINSEQ_PROGRESS", raising=False)
    clock = iter(float(second) for second in range(10_000))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with Progress(1000, "prepare", "series") as counter:
        for _ in range(1000):
            counter.advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("prepare: 100/1,000 series (10%), ")
    assert lines[-1].startswith("prepare: 1,000/1,000 series (100%), ")
    assert all("\r" not in line for line in lines)


def test_progress_can_be_turned_off_and_forced(capsys, monkeypatch):
    monkeypatch.setenv("FINSEQ_PROGRESS", "0")
    list(tracked(range(50), 50, "work", "items"))
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("FINSEQ_PROGRESS", "1")
    list(tracked(range(50), 50, "work", "items"))
    assert len(capsys.readouterr().err.splitlines()) == 10


@pytest.mark.slow
def test_a_500_series_prepare_shows_progress_in_a_bounded_number_of_lines(tmp_path: Path):
    files = write_panel(tmp_path / "data" / "raw", n_series=500, n_bars=300, seed=1)
    params = tiny_params_dict()
    params["data"]["files"] = [str(path.relative_to(tmp_path)) for path in files]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dvc_environment(tmp_path / "home")
    # Plain lines from the start: how soon they begin depends on this machine's speed
    # (tests/test_progress.py::test_slow_work_off_a_terminal_prints_one_line_per_tenth).
    env["FINSEQ_PROGRESS"] = "1"
    env["PYTHONPATH"] = str(ROOT / "src")
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "finseq.stages.prepare"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    progress_lines = [line for line in lines if line.startswith("prepare: ")]
    assert progress_lines, result.stderr
    assert "(100%)" in progress_lines[-1]
    # Two counted steps (files read, series featurised), at most 11 lines each.
    assert len(lines) <= 22 and "\r" not in result.stderr
