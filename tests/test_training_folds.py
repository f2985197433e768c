"""Fold-level training on a tiny real panel: checkpoints, summaries, curves, fold workers.

The panel (two generated daily series of 300 bars, tiny params) is prepared once per module;
the end-to-end pipeline runs of tests/test_wiring.py cover the same code at full length.
"""

from __future__ import annotations

import dataclasses
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_params

import finseq
import finseq.folds as folds_module
import finseq.runtime as runtime_module
from finseq.distributed import Ranks
from finseq.errors import ConfigError
from finseq.evaluate import class_prior
from finseq.fit import EpochResult, FitResult
from finseq.folds import (
    FoldRun,
    _FoldContext,
    _start_fold_worker,
    _train_and_save,
    _train_in_worker,
    fold_curves_tsv,
    log_epoch,
    run_summary,
    train_fold,
    train_folds,
    training_summary,
)
from finseq.inputs import load_series
from finseq.models import build_model, predict_logits
from finseq.panel import prepare_dataset
from finseq.params import ModelConfig
from finseq.provenance import source_hash
from finseq.saving import EXECUTION_ONLY, bar_interval, fold_checkpoint, trained_until
from finseq.scoring import score_fold
from finseq.split import OUTSIDE, TEST, TRAIN, VAL
from finseq.synthetic import write_panel
from finseq.window_sets import make_window_sets

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory):
    """(data, windows, params) of two generated daily series, fp32 and 1 thread."""
    files = write_panel(tmp_path_factory.mktemp("raw"), n_series=2, n_bars=300, seed=3)
    params = tiny_params(train={"precision": "fp32", "seed": 5})
    frames = {str(path): load_series(path) for path in files}
    data = prepare_dataset(frames, params.label, params.split)
    return data, make_window_sets(data, params.window), params


def epoch(number: int, train_loss: float, val_loss: float, accuracy: float, rate: float):
    return EpochResult(number, train_loss, val_loss, accuracy, rate)


# Three epochs whose best (the second) differs from the last in every figure.
HISTORY = (
    epoch(1, 1.0, 0.9, 0.4, 0.01),
    epoch(2, 0.8, 0.7, 0.6, 0.005),
    epoch(3, 0.5, 0.75, 0.55, 0.0025),
)
FITTED = FitResult(2, 0.7, 3, "early_stopping", HISTORY)


def test_run_summary_holds_the_best_epochs_figures_not_the_last_ones():
    assert run_summary(FITTED) == {
        "best_epoch": 2,
        "epochs_run": 3,
        "stopped_early": 1,
        "train": {"loss": 0.8},
        "val": {"loss": 0.7, "accuracy": 0.6},
        "learning_rate": 0.005,
    }
    ran_out = dataclasses.replace(FITTED, stop_reason="max_epochs")
    assert run_summary(ran_out)["stopped_early"] == 0


def test_training_summary_is_the_model_folds_run_with_each_other_folds_val_figures():
    other = FitResult(1, 0.9, 1, "max_epochs", HISTORY[:1])
    summary = training_summary({"f1": other, "final": FITTED}, "final")
    assert summary == {
        **run_summary(FITTED),
        "folds": {"f1": {"best_epoch": 1, "epochs_run": 1, "val": {"loss": 0.9, "accuracy": 0.4}}},
    }
    # One fold only (holdout): no `folds` entry at all.
    assert training_summary({"final": FITTED}, "final") == run_summary(FITTED)


def test_fold_curves_tsv_is_one_row_per_fold_and_epoch_with_exact_floats():
    third = FitResult(1, 1 / 3, 1, "max_epochs", (epoch(1, 0.1 + 0.2, 1 / 3, 0.25, 0.01),))
    assert fold_curves_tsv({"f1": FITTED, "final": third}) == (
        "fold\tstep\ttrain_loss\tval_loss\tval_accuracy\n"
        "f1\t1\t1.0\t0.9\t0.4\n"
        "f1\t2\t0.8\t0.7\t0.6\n"
        "f1\t3\t0.5\t0.75\t0.55\n"
        "final\t1\t0.30000000000000004\t0.3333333333333333\t0.25\n"
    )


class FakeLive:
    """Records what log_epoch asks of DVCLive, with the step each metric was logged at."""

    def __init__(self) -> None:
        self.step = 0
        self.calls: list[tuple] = []

    def log_metric(self, name: str, value: float) -> None:
        self.calls.append((self.step, name, value))

    def next_step(self) -> None:
        self.calls.append((self.step, "next_step"))


def test_log_epoch_logs_each_figure_at_the_epochs_step_then_one_line(capsys):
    live = FakeLive()
    log_epoch(live, HISTORY[1], fold="f1")
    assert live.calls == [
        (2, "train/loss", 0.8),
        (2, "val/loss", 0.7),
        (2, "val/accuracy", 0.6),
        (2, "learning_rate", 0.005),
        (2, "next_step"),
    ]
    log_epoch(FakeLive(), epoch(12, 1 / 3, 2.0, 0.5, 0.01))
    assert capsys.readouterr().out == (
        "fold    f1  epoch   2  train/loss 0.8000  val/loss 0.7000  val/accuracy 0.6000\n"
        "epoch  12  train/loss 0.3333  val/loss 2.0000  val/accuracy 0.5000\n"
    )


def test_a_fold_runs_key_is_its_fold_or_fold_and_seed_offset():
    assert FoldRun("f1", None, None).key == "f1"
    assert FoldRun("f1", None, None, seed_offset=2).key == "f1.seed2"


def hand_data(timestamps: list[str], series: list[int], parts: list[list[int]]):
    """What bar_interval and trained_until read of a PreparedData, written out by hand."""
    return SimpleNamespace(
        timestamps=np.array(timestamps, dtype="datetime64[ns]"),
        series=np.array(series, dtype=np.int16),
        parts=np.array(parts, dtype=np.int8),
        fold_index=["a", "b"].index,
    )


def test_bar_interval_is_the_median_step_within_series_never_across_them(panel):
    """Series 0 has one daily step, series 1 two hourly ones; the 9-day jump between the
    series is no step. All four steps would give 12.5 hours, the jump alone 9 days."""
    data = hand_data(
        ["2000-01-01", "2000-01-02", "2000-01-11", "2000-01-11T01", "2000-01-11T02"],
        [0, 0, 1, 1, 1],
        [[TRAIN] * 5, [TRAIN] * 5],
    )
    assert bar_interval(data) == "0 days 01:00:00"
    assert bar_interval(panel[0]) == "1 days 00:00:00"


def test_trained_until_is_the_last_train_or_val_bar_of_that_fold_in_any_series():
    """Fold a's last seen bar is a val bar of the first series (the second ends earlier);
    fold b's is a train bar: later test and outside bars never count."""
    data = hand_data(
        ["2000-01-03", "2000-01-04", "2000-01-05", "2000-01-06", "2000-01-02", "2000-01-03"],
        [0, 0, 0, 0, 1, 1],
        [
            [TRAIN, TRAIN, VAL, TEST, TRAIN, VAL],
            [TRAIN, TRAIN, OUTSIDE, TEST, VAL, TEST],
        ],
    )
    assert trained_until(data, "a") == "2000-01-05T00:00:00"
    assert trained_until(data, "b") == "2000-01-04T00:00:00"


def tiny_model(data) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig("gru", 4, 1, 0.0), data.features.shape[1])


def test_a_fold_checkpoint_holds_that_folds_scaler_cuts_training_and_provenance(panel):
    data, windows, params = panel
    model = tiny_model(data)
    checkpoint = fold_checkpoint(model, FITTED, data, windows, "f2", params, world_size=3)
    folds = data.meta["folds"]
    assert checkpoint["scaler_mean"].tolist() == folds["f2"]["scaler_mean"]
    assert checkpoint["scaler_std"].tolist() == folds["f2"]["scaler_std"]
    assert folds["f2"]["scaler_mean"] != folds["f3"]["scaler_mean"]
    assert checkpoint["seq_len"] == 8
    assert checkpoint["feature_names"] == data.meta["feature_names"]
    assert all(
        torch.equal(value, model.state_dict()[k]) for k, value in checkpoint["state_dict"].items()
    )
    assert checkpoint["training"] == {
        "fold": "f2",
        "train_start": folds["f2"]["train_start"],
        "val_start": folds["f2"]["val_start"],
        "test_start": folds["f2"]["test_start"],
        "test_end": folds["f2"]["test_end"],
        "trained_until": trained_until(data, "f2"),
        "best_epoch": 2,
        "stop_reason": "early_stopping",
        "seed": 5,
        "world_size": 3,
        "label_horizon": 3,
        "warmup_bars": data.meta["warmup_bars"],
        "series": ["series_000", "series_001"],
        "bar_interval": "1 days 00:00:00",
    }
    train = checkpoint["training"]
    assert train["val_start"] <= train["trained_until"] < train["test_start"]
    assert train["trained_until"] != trained_until(data, "f3")
    expected_train = dataclasses.asdict(params.train)
    for name in EXECUTION_ONLY:
        del expected_train[name]
    assert checkpoint["params"] == {
        "data": {"adjust_volume": params.data.adjust_volume},  # how its volume was read
        "label": data.meta["label"],
        "split": data.meta["split"],
        "window": {"seq_len": 8, "stride": windows.stride},
        "model": dataclasses.asdict(params.model),
        "train": expected_train,
    }
    assert {"threads", "fold_workers"}.isdisjoint(checkpoint["params"]["train"])
    assert checkpoint["provenance"] == {
        "finseq_version": finseq.__version__,
        "torch_version": str(torch.__version__),
        "source_hash": source_hash(),
        "prepared_hash": data.content_hash,
        "windows_hash": windows.content_hash,
    }
    assert data.content_hash and windows.content_hash
    assert (
        fold_checkpoint(model, FITTED, data, windows, "f2", params)["training"]["world_size"] == 1
    )


def test_score_fold_scores_val_and_test_with_that_folds_scaler_beside_its_train_prior(panel):
    data, windows, _ = panel
    model = tiny_model(data)
    scores = score_fold(model, data, windows, "f2", CPU, batch_size=32, precision="fp32")
    assert scores.fold == "f2"
    assert set(scores.ends) == set(scores.logits) == {"val", "test"}
    features = torch.as_tensor(data.scaled_features("f2"))
    for part in ("val", "test"):
        ends = windows.ends["f2"][part]
        assert np.array_equal(scores.ends[part], ends)
        whole = predict_logits(model, features, torch.as_tensor(ends), 8, len(ends), "fp32")
        assert scores.logits[part].shape == (len(ends), 3)
        np.testing.assert_allclose(scores.logits[part], whole.numpy(), rtol=0, atol=1e-6)
    train_labels = data.labels[windows.ends["f2"]["train"]]
    counts = np.array([np.sum(train_labels == label) for label in (-1, 0, 1)])
    np.testing.assert_allclose(scores.prior, (counts + 1) / (counts.sum() + 3), rtol=1e-12)
    val_labels = data.labels[windows.ends["f2"]["val"]].astype(np.int64) + 1
    assert not np.allclose(scores.prior, class_prior(val_labels))


def context_of(panel, ranks: Ranks | None = None) -> _FoldContext:
    data, windows, params = panel
    params = dataclasses.replace(params, model=ModelConfig("gru", 4, 1, 0.0))
    return _FoldContext(data, windows, params, CPU, ranks)


def test_train_and_save_without_a_checkpoint_or_live_dir_writes_nothing(panel, tmp_path):
    key, result = _train_and_save(context_of(panel), FoldRun("f1", None, None))
    assert key == "f1" and result.epochs_run == 2
    assert list(tmp_path.iterdir()) == []


def test_train_and_save_logs_saves_and_offsets_the_seed(panel, tmp_path, monkeypatch, capsys):
    """The seed offset reaches the fold's training and its checkpoint; each epoch is logged
    under the fold's name; DVCLive's own summary (the last epoch's) is removed; a distributed
    run's world size is recorded, one process's is 1."""
    model = tiny_model(panel[0])
    seen = {}

    def fake_train_fold(data, windows, fold, model_config, train_config, device, **kwargs):
        seen.update(fold=fold, seed=train_config.seed, ranks=kwargs["ranks"], device=device)
        for result in HISTORY if kwargs["on_epoch"] else ():
            kwargs["on_epoch"](result)
        return model, FITTED

    monkeypatch.setattr(folds_module, "train_fold", fake_train_fold)
    ranks = Ranks(0, 2, 0, 2)
    run = FoldRun("f3", tmp_path / "live", tmp_path / "f3.pth", seed_offset=4)
    assert _train_and_save(context_of(panel, ranks), run) == ("f3.seed4", FITTED)
    assert seen == {"fold": "f3", "seed": 9, "ranks": ranks, "device": CPU}
    printed = capsys.readouterr().out.splitlines()
    assert [line[:21] for line in printed] == [f"fold    f3  epoch   {n}" for n in (1, 2, 3)]
    assert not (run.live_dir / "metrics.json").exists()
    logged = (run.live_dir / "plots" / "metrics" / "val" / "loss.tsv").read_text().split()
    assert logged == ["step", "loss", "1", "0.9", "2", "0.7", "3", "0.75"]
    checkpoint = torch.load(run.checkpoint, weights_only=True)
    assert checkpoint["training"]["seed"] == 9
    assert checkpoint["training"]["world_size"] == 2
    assert checkpoint["training"]["fold"] == "f3"
    alone = FoldRun("f3", None, tmp_path / "alone.pth")
    _train_and_save(context_of(panel), alone)
    assert torch.load(alone.checkpoint, weights_only=True)["training"]["world_size"] == 1


def test_train_folds_in_one_process_or_two_workers_gives_the_same_weights_in_runs_order(
    panel, tmp_path, capsys
):
    """Two fold workers start the latest fold first; the results still come back in the
    order of `runs`, and every fold's weights are those of in-process training."""
    context = context_of(panel)
    weights, results = {}, {}
    for workers in (1, 2):
        train = dataclasses.replace(context.params.train, fold_workers=workers)
        params = dataclasses.replace(context.params, train=train)
        runs = [
            FoldRun(fold, None, tmp_path / str(workers) / f"{fold}.pth")
            for fold in ("f1", "f2", "final")
        ]
        results[workers] = train_folds(panel[0], panel[1], params, CPU, runs)
        assert list(results[workers]) == ["f1", "f2", "final"]
        weights[workers] = {run.fold: torch.load(run.checkpoint)["state_dict"] for run in runs}
    assert results[1] == results[2]
    assert all(result.epochs_run == 2 for result in results[2].values())
    for fold, state in weights[1].items():
        assert all(torch.equal(value, weights[2][fold][name]) for name, value in state.items())
    assert weights[1]["f1"]["head.weight"].shape == weights[1]["final"]["head.weight"].shape
    assert not torch.equal(weights[1]["f1"]["head.weight"], weights[1]["final"]["head.weight"])
    lines = capsys.readouterr().out.splitlines()
    done = [line.split(":")[0] for line in lines if " done (" in line]
    assert done[:3] == [
        "fold f1 done (1 of 3)",
        "fold f2 done (2 of 3)",
        "fold final done (3 of 3)",
    ]
    # The workers finish in any order; each fold is reported once, counted as it finishes.
    assert sorted(line.split(" done")[0] for line in done[3:]) == [
        "fold f1",
        "fold f2",
        "fold final",
    ]
    assert [line.split("(")[1] for line in done[3:]] == ["1 of 3)", "2 of 3)", "3 of 3)"]


def test_train_folds_prints_each_done_fold_on_the_main_rank_only(panel, monkeypatch, capsys):
    """Each fold is trained in a context holding the run's device and ranks, and its result
    is returned under its key."""
    fitted = dataclasses.replace(FITTED, best_val_loss=0.123456)
    contexts = []

    def fake_train_and_save(context, run):
        contexts.append(context)
        return run.key, fitted

    monkeypatch.setattr(folds_module, "_train_and_save", fake_train_and_save)
    runs = [FoldRun("f1", None, None), FoldRun("f1", None, None, seed_offset=1)]
    data, windows, params = panel
    printed = {}
    for rank in (1, 0):
        ranks = Ranks(rank, 2, rank, 2)
        results = train_folds(data, windows, params, CPU, runs, ranks)
        assert results == {"f1": fitted, "f1.seed1": fitted}
        assert [(context.device, context.ranks) for context in contexts[-2:]] == [(CPU, ranks)] * 2
        assert contexts[-1].params is params and contexts[-1].data is data
        printed[rank] = capsys.readouterr().out
    assert printed == {
        1: "",
        0: "fold f1 done (1 of 2): best epoch 2, val/loss 0.1235\n"
        "fold f1.seed1 done (2 of 2): best epoch 2, val/loss 0.1235\n",
    }


@pytest.fixture
def worker_state(monkeypatch):
    """Puts back what a fold worker's start changes in this process: signal handlers, the
    thread count, the deterministic-algorithm flags and the worker's context."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    monkeypatch.setattr(folds_module, "_worker_context", None)
    yield
    for number, handler in handlers.items():
        signal.signal(number, handler)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def test_a_fold_worker_ends_quietly_on_sigterm_leaves_ctrl_c_to_its_parent_and_trains(
    panel, worker_state, monkeypatch
):
    """Run in this process (a forked worker runs the same two functions): the worker's
    signals, threads and numerics, then each fold it is given trained in its context."""
    context = context_of(panel)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.use_deterministic_algorithms(False)
    _start_fold_worker(context, 1)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    trained = []

    def fake_train_and_save(given, run):
        trained.append((given, run))
        return run.key, FITTED

    monkeypatch.setattr(folds_module, "_train_and_save", fake_train_and_save)
    run = FoldRun("f2", None, None)
    assert _train_in_worker(run) == ("f2", FITTED)
    assert trained == [(context, run)]


def test_score_fold_scores_in_the_precision_it_is_given(panel):
    """bf16 logits differ from fp32 ones by bf16's rounding; score_fold passes it on."""
    data, windows, _ = panel
    model = tiny_model(data)
    scored = {
        precision: score_fold(model, data, windows, "f2", CPU, batch_size=32, precision=precision)
        for precision in ("fp32", "bf16")
    }
    features = torch.as_tensor(data.scaled_features("f2"))
    ends = torch.as_tensor(windows.ends["f2"]["test"])
    bf16 = predict_logits(model, features, ends, 8, 32, "bf16").numpy()
    assert np.array_equal(scored["bf16"].logits["test"], bf16)
    assert not np.array_equal(scored["bf16"].logits["test"], scored["fp32"].logits["test"])


def test_train_folds_decides_its_workers_from_the_device_and_the_ranks(panel, monkeypatch):
    """With fold_workers and threads `auto`, a CUDA device trains the folds one after another
    in this process; under torchrun, two fold workers are refused."""
    trained = []

    def fake_train_and_save(context, run):
        trained.append(run.key)
        return run.key, FITTED

    monkeypatch.setattr(folds_module, "_train_and_save", fake_train_and_save)
    monkeypatch.setattr(runtime_module, "in_dvc_temp_workspace", lambda *args: False)
    monkeypatch.setattr(runtime_module, "usable_cores", lambda: 2)
    data, windows, params = panel
    auto = dataclasses.replace(params.train, fold_workers="auto", threads="auto")
    runs = [FoldRun("f1", None, None), FoldRun("f2", None, None)]
    cuda = torch.device("cuda")
    results = train_folds(data, windows, dataclasses.replace(params, train=auto), cuda, runs)
    assert list(results) == trained == ["f1", "f2"]
    two = dataclasses.replace(params, train=dataclasses.replace(auto, fold_workers=2))
    with pytest.raises(ConfigError, match="under torchrun"):
        train_folds(data, windows, two, CPU, runs, Ranks(0, 2, 0, 2))


class FakePool:
    """multiprocessing's Pool, recorded: what it was started with, the order runs were
    handed to it, and how it was shut down. Each run "trains" to FITTED at once."""

    def __init__(self, log: list, workers: int, initializer, initargs) -> None:
        self.log = log
        log.append(("pool", workers, initializer, initargs))

    def imap_unordered(self, function, runs):
        self.log.append(("imap", function, [run.key for run in runs]))
        return iter([(run.key, FITTED) for run in runs])

    def close(self) -> None:
        self.log.append("close")

    def terminate(self) -> None:
        self.log.append("terminate")

    def join(self) -> None:
        self.log.append("join")


def test_fold_workers_are_forked_with_their_thread_count_and_given_the_latest_folds_first(
    panel, monkeypatch
):
    """One thread per worker unless train.threads says otherwise; the runs go to the pool
    latest first, and the pool is closed, terminated and joined."""
    log: list = []
    methods = []

    def get_context(method):
        methods.append(method)
        return SimpleNamespace(Pool=lambda *args, **kwargs: FakePool(log, *args, **kwargs))

    monkeypatch.setattr(folds_module.multiprocessing, "get_context", get_context)
    data, windows, params = panel
    runs = [FoldRun(fold, None, None) for fold in ("f1", "f2", "f3")]
    for threads, expected in (("auto", 1), (3, 3)):
        train = dataclasses.replace(params.train, fold_workers=2, threads=threads)
        given = dataclasses.replace(params, train=train)
        log.clear()
        assert list(train_folds(data, windows, given, CPU, runs)) == ["f1", "f2", "f3"]
        context = _FoldContext(data, windows, given, CPU, None)
        assert log == [
            ("pool", 2, _start_fold_worker, (context, expected)),
            ("imap", _train_in_worker, ["f3", "f2", "f1"]),
            "close",
            "terminate",
            "join",
        ]
    assert methods == ["fork", "fork"]


def test_train_fold_fits_a_seeded_model_on_that_folds_scaled_windows_with_its_callbacks(
    panel, monkeypatch
):
    """What train_fold hands to fit: a fresh model seeded by train.seed, the fold's scaled
    features and train and val window ends, and the caller's on_epoch, batch size and ranks."""
    data, windows, params = panel
    handed = []
    monkeypatch.setattr(folds_module, "fit", lambda *args: handed.append(args) or FITTED)
    ranks, on_epoch = Ranks(0, 2, 0, 2), print
    config = ModelConfig("gru", 4, 1, 0.0)
    for _ in range(2):
        model, result = train_fold(
            data,
            windows,
            "f2",
            config,
            params.train,
            CPU,
            eval_batch_size=7,
            on_epoch=on_epoch,
            ranks=ranks,
        )
        assert result is FITTED
    (first, fitted, train, *rest), (second, *_) = handed
    assert fitted.features.dtype == torch.float32 and fitted.seq_len == 8
    assert np.array_equal(fitted.features.numpy(), data.scaled_features("f2"))
    assert np.array_equal(fitted.train_ends.numpy(), windows.ends["f2"]["train"])
    assert np.array_equal(fitted.val_ends.numpy(), windows.ends["f2"]["val"])
    assert train is params.train and rest == [on_epoch, 7, ranks]
    assert second is model and first is not second
    torch.manual_seed(params.train.seed)
    seeded = build_model(config, data.features.shape[1]).state_dict()
    for built in (first, second):
        assert all(torch.equal(v, built.state_dict()[k]) for k, v in seeded.items())
