"""The benchmark scripts' core functions at toy sizes: they run and compute the right things.

No timing is asserted here; the benchmarks themselves are run by hand (benchmarks/README.md).
"""

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_params, train_tiny_model

from finseq.fit import TrainingData, fit
from finseq.markdown import markdown_table
from finseq.models import build_model
from finseq.synthetic import write_panel
from finseq.verdicts import VERDICT_ROWS
from finseq.windows import gather_windows, window_offsets

sys.path.insert(0, str(ROOT / "benchmarks"))

import benchlib
import predict as predict_benchmark
import scaling
import train_throughput
import universe as universe_benchmark
import verdicts as verdicts_benchmark


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Tiny params over a generated 2-series panel, and its prepared data and window ends."""
    files = write_panel(tmp_path_factory.mktemp("raw"), n_series=2, n_bars=300, seed=3)
    params = tiny_params(data={"files": [str(path) for path in files]}, split={"method": "holdout"})
    return params, benchlib.build_dataset(params)


def test_flop_count_is_the_stated_formula_for_the_issue_5_model():
    # 3 x 2 x 60 x (4 x (23 + 64) x 64 + 4 x (64 + 64) x 64)
    assert train_throughput.training_flops_per_sample("lstm", 23, 64, 2, 60) == 19_814_400
    assert train_throughput.training_flops_per_sample("gru", 23, 64, 2, 60) == 14_860_800


def test_reference_dataset_yields_the_same_windows_as_the_gather():
    features = torch.arange(60, dtype=torch.float32).reshape(20, 3)
    classes = torch.arange(20) % 3
    ends = np.array([4, 11, 19])
    dataset = train_throughput.WindowDataset(features, classes, ends, seq_len=5)
    gathered = gather_windows(features, torch.as_tensor(ends), window_offsets(5))
    for index in range(len(ends)):
        window, label = dataset[index]
        assert torch.equal(window, gathered[index])
        assert int(label) == int(classes[ends[index]])


@pytest.mark.slow
def test_the_timed_step_is_the_step_fit_takes(toy):
    """(b) and (c) time train_step; one epoch of fit over exactly one batch must equal it."""
    params, dataset = toy
    model_config = dataclasses.replace(params.model, dropout=0.0)
    ends = dataset.ends["train"][:32]
    config = dataclasses.replace(params.train, epochs=1, batch_size=len(ends))
    data = TrainingData.from_arrays(
        dataset.features,
        dataset.labels,
        ends,
        dataset.ends["val"],
        dataset.windows.seq_len,
        torch.device("cpu"),
    )
    torch.manual_seed(0)
    fitted = build_model(model_config, data.features.shape[1])
    fit(fitted, data, config)
    torch.manual_seed(0)
    stepped = build_model(model_config, data.features.shape[1])
    optimizer = torch.optim.Adam(stepped.parameters(), lr=config.learning_rate)
    stepped.train()
    windows = gather_windows(data.features, data.train_ends, window_offsets(data.seq_len))
    train_throughput.train_step(stepped, optimizer, windows, data.classes[data.train_ends], config)
    for name, value in fitted.state_dict().items():
        torch.testing.assert_close(stepped.state_dict()[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_throughput_runs_all_three_loops_over_the_train_windows(toy):
    params, dataset = toy
    bench = train_throughput.Bench(
        dataset.features,
        dataset.labels,
        dataset.ends["train"],
        dataset.ends["val"],
        dataset.windows.seq_len,
        params.model,
        params.train,
        torch.device("cpu"),
    )
    model, optimizer = bench.new_model()
    assert bench.own_loop(model) == len(dataset.ends["train"])
    assert bench.reference_loop(model, optimizer) == len(dataset.ends["train"])
    batch = min(params.train.batch_size, bench.n_train)
    assert bench.compute_bound(model, optimizer, steps=3) == 3 * batch
    result = train_throughput.measure(bench, rounds=2)
    assert set(result["samples_per_s"]) == {"a", "b", "c"}
    assert all(rate > 0 for rate in result["samples_per_s"].values())
    assert len(result["a_over_c"]) == len(result["b_over_c"]) == 2


def test_throughput_rounds_move_through_the_train_windows_in_chunks():
    ends = np.arange(100, 110)
    chunks = [train_throughput.Bench.round_ends_of(ends, 4, index) for index in range(3)]
    assert [chunk.tolist() for chunk in chunks] == [
        [100, 101, 102, 103],
        [104, 105, 106, 107],
        [108, 109, 100, 101],
    ]
    assert train_throughput.Bench.round_ends_of(ends, 0, 5).tolist() == ends.tolist()
    assert train_throughput.Bench.round_ends_of(ends, 50, 1).tolist() == ends.tolist()


def test_window_memory_compares_int64_ends_with_a_materialised_array():
    memory = benchlib.WindowMemory.of(rows=100, n_features=23, n_windows=90, seq_len=60)
    assert memory.feature_matrix == 100 * 23 * 4
    assert memory.window_outputs == 90 * 8
    assert memory.materialised / memory.feature_matrix == pytest.approx(90 * 60 / 100)


def test_markdown_table_aligns_columns_and_escapes_pipes():
    """The benchmarks' reports use finseq.markdown.markdown_table: the first column
    left-aligned, the others right-aligned, every column as wide as its widest cell."""
    table = markdown_table(["model", "samples/s"], [["lstm", "1,234"], ["gru", "5"]])
    assert table.splitlines() == [
        "| model | samples/s |",
        "| ----- | --------: |",
        "| lstm  |     1,234 |",
        "| gru   |         5 |",
    ]
    # A `|` in a cell is escaped, so it stays one cell; the column widens to fit it.
    lines = markdown_table(["way", "n"], [["a|b", 1], ["c", 22]]).splitlines()
    assert lines == [
        "| way  |   n |",
        "| ---- | --: |",
        "| a\\|b |   1 |",
        "| c    |  22 |",
    ]
    assert all(len(line) == len(lines[0]) for line in lines)
    assert all(line.replace("\\|", "").count("|") == 3 for line in lines)


def test_scaling_size_argument():
    assert scaling.parse_size("50x5000") == (50, 5000)
    with pytest.raises(Exception, match="SERIESxBARS"):
        scaling.parse_size("50by5000")


def test_scaling_net_time_per_bar_removes_the_fixed_cost():
    def size(series, bars, fixed_s, us_per_bar):
        work = fixed_s + series * bars * us_per_bar / 1e6
        stage = {"stage": "window", "work_s": work, "wall_s": work + 1, "import_s": 1}
        return {
            "series": series,
            "bars_per_series": bars,
            "bars": series * bars,
            "stages": [stage | {"peak_rss_bytes": 1}],
        }

    # 7 ms fixed + 0.025 us per bar: raw us/bar falls by half, net us/bar is flat.
    baseline, small, large = (size(n, 5000, 0.007, 0.025) for n in (2, 50, 500))
    baseline["bars_per_series"], baseline["bars"] = 1000, 2000
    baseline["stages"][0]["work_s"] = 0.007 + 2000 * 0.025 / 1e6
    table = "\n".join(scaling.time_per_bar_lines(small, large, baseline))
    window_row = next(line for line in table.splitlines() if line.startswith("| window"))
    cells = [cell.strip() for cell in window_row.strip("|").split("|")]
    assert cells[1:] == ["0.053", "0.028", "0.52", "0.025", "0.025", "1.00", "yes"]
    # Without a baseline the raw ratio decides, and it is not flat.
    table = "\n".join(scaling.time_per_bar_lines(small, large, None))
    assert next(line for line in table.splitlines() if line.startswith("| window")).endswith("no |")


@pytest.mark.slow
def test_scaling_runs_each_stage_in_its_own_process(tmp_path):
    size = scaling.run_size(tmp_path, n_series=2, n_bars=1000, overrides={"train": {"epochs": 1}})
    assert [stage["stage"] for stage in size["stages"]] == list(scaling.STAGES)
    for stage in size["stages"]:
        assert stage["wall_s"] >= stage["import_s"] + stage["work_s"] > 0
        assert stage["peak_rss_bytes"] > 10 * benchlib.MB
    counts = size["bytes"]
    assert counts["rows"] == 2 * (1000 - 60)
    assert counts["feature_matrix"] == counts["rows"] * 23 * 4
    # One int64 per window plus the .npy headers and meta.json.
    assert 8 * counts["windows"] <= counts["window_outputs"] <= 8 * counts["windows"] + 2000
    assert (tmp_path / "2x1000" / "models" / "model.pth").is_file()


@pytest.mark.slow
def test_scaling_prepares_one_universe_kept_three_ways_to_the_same_arrays(tmp_path):
    compared = scaling.compare_prepare_layouts(tmp_path, n_series=3, n_bars=400, repeats=1)
    assert list(compared["runs"]) == list(scaling.LAYOUTS)
    assert compared["identical"]
    assert all(run["work_s"] > 0 for run in compared["runs"].values())
    assert "identical for every layout: yes" in "\n".join(scaling.layouts_lines(compared))


@pytest.mark.slow
def test_predict_timings_and_history_gaps_run_on_a_tiny_model(tmp_path, monkeypatch):
    # Any model will do: one trained in process on a generated panel.
    model_file = tmp_path / "model.pth"
    train_tiny_model(
        write_panel(tmp_path / "train-raw", n_series=2, n_bars=300, seed=3), model_file
    )
    files = [str(path) for path in write_panel(tmp_path / "raw", n_series=2, n_bars=300)]
    assert predict_benchmark.seconds_in_process(files, model_file, rounds=1) > 0
    steps = predict_benchmark.per_file_steps(files)
    assert list(steps) == ["read", "validate", "features"] and min(steps.values()) > 0
    monkeypatch.setattr(predict_benchmark, "HISTORY_ENDS", range(-2, 0))
    gaps = predict_benchmark.history_gaps(model_file, [70, 400], tmp_path)
    # Too little history moves the probabilities; enough leaves them within 1e-6.
    assert gaps[70] > 1e-6 >= gaps[400]


@pytest.mark.slow
def test_the_verdicts_benchmark_counts_each_figures_verdicts_over_its_pairs(tmp_path, capsys):
    """One pair of each kind on a short panel: every figure's count is between 0 and the
    pairs, and each run's seeds.* spread is kept (three runs: two seeds and one shuffled)."""
    out = tmp_path / "verdicts.json"
    verdicts_benchmark.main(
        ["--pairs", "1", "--bars", "1500", "--seeds", "2", "--workers", "1", "--json", str(out)]
    )
    result = json.loads(out.read_text())
    for kind in ("false_positives", "power"):
        assert set(result[kind]) == {name for name, _ in VERDICT_ROWS}
        assert all(0 <= count <= 1 for count in result[kind].values())
    assert sorted(result["seeds"]) == ["1000", "1000-shuffled", "1005"]
    assert all(spread["count"] == 2 for spread in result["seeds"].values())
    assert "False positives over 1 seed-only pairs" in capsys.readouterr().out


@pytest.mark.slow
def test_the_universe_benchmark_prints_the_cross_sectional_figures_of_both_universes(capsys):
    """12 generated series, enough for the cross-section (10 a date): one row per universe,
    each with its rank IC interval, and the table quoted in docs/results.md has the same
    header."""
    universe_benchmark.main(["--series", "12", "--bars", "800"])
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("| generated universe"))
    rows = [line for line in table if line.startswith(("| drift", "| volatility"))]
    assert len(rows) == 2 and all(row.count("[") >= 2 for row in rows)
    quoted = [
        line
        for line in (ROOT / "docs" / "results.md").read_text().splitlines()
        if line.startswith("| generated universe")
    ]
    assert [cells(line) for line in quoted] == [cells(header)]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]
