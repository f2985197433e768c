"""The benchmark scripts' core functions at toy sizes: they run and compute the right things.

No timing is asserted here; the benchmarks themselves are run by hand (benchmarks/README.md).
"""

import dataclasses
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_params, train_tiny_model

from finseq.models import build_model
from finseq.synthetic import write_panel
from finseq.training import TrainingData, fit
from finseq.windows import gather_windows, window_offsets

sys.path.insert(0, str(ROOT / "benchmarks"))

import benchlib
import folds
import precision
import predict as predict_benchmark
import scaling
import sweep
import train_throughput


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


def test_markdown_table_aligns_columns():
    table = benchlib.markdown_table(["model", "samples/s"], [["lstm", "1,234"], ["gru", "5"]])
    assert table.splitlines() == [
        "| model | samples/s |",
        "| ----- | --------: |",
        "| lstm  |     1,234 |",
        "| gru   |         5 |",
    ]


def test_sweep_sets_every_swept_key_in_every_experiment():
    grid = sweep.experiment_grid(["lstm", "gru"], [16, 32])
    assert len(grid) == 4
    assert ["model.type=gru", "model.hidden_dim=16"] in grid
    assert sweep.set_options(grid[0]) == ["-S", "model.type=lstm", "-S", "model.hidden_dim=16"]


def test_sweep_reads_dvc_queue_status():
    output = (
        "Task     Name        Created    Status\n"
        "5464d42  woods-seal  03:12 AM   Success\n"
        "7f91455  sewed-tomb  03:12 AM   Running\n"
        "8a0b1c2  dusty-oar   03:12 AM   Queued\n"
        "\nWorker status: 1 active, 0 idle\n"
    )
    assert sweep.queue_counts(output) == {"Queued": 1, "Running": 1, "Success": 1, "Failed": 0}


def test_precision_compares_bf16_with_the_fp32_seed_spread():
    def run(precision_name, seed, loss):
        metrics = {"loss": loss, "accuracy": 0.4, "skill": 0.01}
        return {"precision": precision_name, "seed": seed, "val": metrics, "test": metrics}

    runs = [run("fp32", 1, 1.00), run("fp32", 2, 1.02), run("bf16", 1, 1.01), run("bf16", 2, 1.05)]
    comparison = precision.compare(runs)
    assert comparison["val.loss"]["fp32_spread"] == pytest.approx(0.02)
    assert comparison["val.loss"]["bf16_minus_fp32"] == pytest.approx(0.02)
    assert comparison["val.loss"]["within_noise"]
    runs[-1] = run("bf16", 2, 1.10)
    assert not precision.compare(runs)["val.loss"]["within_noise"]


def test_precision_trains_and_scores_both_ways(toy):
    params, dataset = toy
    for precision_name in precision.PRECISIONS:
        scored = precision.train_and_score(dataset, params, precision_name, seed=1, epochs=1)
        assert scored["best_epoch"] == 1
        for split in ("val", "test"):
            known = dataset.labels[dataset.ends[split]] >= -1
            assert scored[split]["samples"] == int(known.sum())
            assert np.isfinite(scored[split]["loss"])
    speed = precision.training_speed(dataset, params, epochs=1, rounds=1)
    assert all(len(rates) == 1 and rates[0] > 0 for rates in speed.values())


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


def test_fold_rounds_train_the_same_weights_in_one_process_and_in_two(tmp_path):
    files = write_panel(tmp_path / "raw", n_series=2, n_bars=300, seed=3)
    params = tiny_params(data={"files": [str(path) for path in files]})
    folds._shared.update(dataset=benchlib.build_dataset(params), params=params)
    names = folds._shared["dataset"].prepared.fold_names[:3]
    threads = torch.get_num_threads()
    try:
        _, one = folds.sequential(names, threads=1)
        _, two = folds.parallel(names, workers=2)
    finally:
        torch.set_num_threads(threads)
    assert set(one) == set(two) == set(names)
    assert folds.same_weights(one, two)


def test_predict_timings_and_history_gaps_run_on_a_tiny_model(tmp_path, monkeypatch):
    # Any model will do: one trained in process on a generated panel.
    model_file = tmp_path / "model.pth"
    train_tiny_model(
        write_panel(tmp_path / "train-raw", n_series=2, n_bars=300, seed=3), model_file
    )
    files = [str(path) for path in write_panel(tmp_path / "raw", n_series=2, n_bars=300)]
    assert predict_benchmark.seconds_in_process(files, model_file, rounds=1) > 0
    monkeypatch.setattr(predict_benchmark, "HISTORY_ENDS", range(-2, 0))
    gaps = predict_benchmark.history_gaps(model_file, [70, 400], tmp_path)
    # Too little history moves the probabilities; enough leaves them within 1e-6.
    assert gaps[70] > 1e-6 >= gaps[400]
