"""The training loop on a small learnable problem: learning, early stopping, threads, bf16."""

import dataclasses
import os

import numpy as np
import pytest
import torch
from conftest import tiny_params

import finseq.fit as fit_module
import finseq.runtime as runtime_module
from finseq.distributed import Ranks
from finseq.errors import ConfigError
from finseq.fit import TrainingData, _validation, fit
from finseq.models import build_model, predict_logits
from finseq.params import ModelConfig
from finseq.runtime import (
    autocast,
    configure_torch,
    has_native_bf16,
    in_dvc_temp_workspace,
    resolve_device,
    resolve_fold_workers,
    resolve_threads,
    set_numerics,
)


def learnable_data(rows: int = 600, seed: int = 0) -> TrainingData:
    """Label = sign of feature 0 at the window's last row: learnable from the window alone."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, 3)).astype(np.float32)
    labels = np.sign(features[:, 0]).astype(np.int8)
    ends = np.arange(4, rows)
    train_ends, val_ends = ends[: rows // 2], ends[rows // 2 :]
    return TrainingData.from_arrays(features, labels, train_ends, val_ends, 5, torch.device("cpu"))


def train_config(**changes):
    return dataclasses.replace(tiny_params().train, **changes)


def test_fit_learns_a_learnable_problem_and_restores_its_best_epoch():
    torch.manual_seed(0)
    model = build_model(ModelConfig("gru", 16, 1, 0.0), n_features=3)
    seen = []
    config = train_config(epochs=15, learning_rate=0.01)
    result = fit(model, learnable_data(), config, seen.append)
    assert [epoch.epoch for epoch in seen] == list(range(1, result.epochs_run + 1))
    assert seen[-1].val_accuracy > 0.9
    best = min(seen, key=lambda epoch: epoch.val_loss)
    assert result.best_epoch == best.epoch
    data = learnable_data()
    logits = predict_logits(
        model, data.features, data.val_ends, data.seq_len, 1000, config.precision
    )
    restored_loss = torch.nn.functional.cross_entropy(logits, data.classes[data.val_ends])
    assert float(restored_loss) == pytest.approx(best.val_loss, rel=1e-5)


def test_fit_stops_after_patience_epochs_without_a_lower_val_loss():
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    # Labels unrelated to features: val loss stops improving almost at once.
    data = learnable_data()
    order = torch.randperm(len(data.classes), generator=torch.Generator().manual_seed(1))
    shuffled = data.classes[order]
    noise = dataclasses.replace(data, classes=shuffled)
    config = train_config(epochs=200, patience=3, learning_rate=0.05)
    result = fit(model, noise, config)
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == result.best_epoch + 3
    assert result.epochs_run < 200
    # The model holds the best epoch's weights, not the last epoch's.
    logits = predict_logits(
        model, noise.features, noise.val_ends, noise.seq_len, 4096, config.precision
    )
    restored = float(torch.nn.functional.cross_entropy(logits, noise.classes[noise.val_ends]))
    assert restored == pytest.approx(result.best_val_loss, rel=1e-6)
    assert result.best_val_loss == result.history[result.best_epoch - 1].val_loss
    assert abs(restored - result.history[-1].val_loss) > 1e-6


def test_plateau_schedule_lowers_the_rate_after_lr_patience_epochs_without_gain():
    """Gradients clipped far below Adam's epsilon barely move the loss (by far less than the
    scheduler's relative threshold of 1e-4): every epoch is a plateau. With lr_patience 1 the
    rate falls by lr_factor after the third epoch and after every second one from then on;
    with lr_schedule none it never moves. (A rate of 1e-12 would not do: ReduceLROnPlateau
    ignores reductions smaller than its eps, 1e-8.)"""
    data = learnable_data()
    rates = {}
    for schedule in ("none", "plateau"):
        torch.manual_seed(0)
        model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
        seen = []
        config = train_config(
            epochs=7,
            patience=100,
            learning_rate=1e-3,
            grad_clip=1e-12,
            lr_schedule=schedule,
            lr_factor=0.5,
            lr_patience=1,
        )
        fit(model, data, config, seen.append)
        rates[schedule] = [epoch.learning_rate for epoch in seen]
    assert rates["none"] == [1e-3] * 7
    assert rates["plateau"] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4], rel=1e-9, abs=0
    )


def test_same_seed_gives_identical_training():
    def run():
        torch.manual_seed(3)
        model = build_model(ModelConfig("lstm", 8, 1, 0.1), n_features=3)
        fit(model, learnable_data(), train_config(epochs=2))
        return model.state_dict()

    first, second = run(), run()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_bf16_autocast_trains_and_predicts_in_fp32_outputs():
    torch.manual_seed(0)
    model = build_model(ModelConfig("lstm", 8, 1, 0.0), n_features=3)
    torch.manual_seed(0)
    fp32_model = build_model(ModelConfig("lstm", 8, 1, 0.0), n_features=3)
    result = fit(model, learnable_data(), train_config(epochs=2, precision="bf16"))
    assert np.isfinite(result.best_val_loss)
    # The training steps ran under autocast too: from the same start, the first epoch's
    # train loss (summed during the steps) and the weights differ from fp32 training's.
    fp32_result = fit(fp32_model, learnable_data(), train_config(epochs=2, precision="fp32"))
    assert result.history[0].train_loss != fp32_result.history[0].train_loss
    assert any(
        not torch.equal(value, fp32_model.state_dict()[name])
        for name, value in model.state_dict().items()
    )
    data = learnable_data()
    logits = predict_logits(model, data.features, data.val_ends, data.seq_len, 64, "bf16")
    assert logits.dtype == torch.float32
    # Autocast is on: the same model's fp32 logits differ, by about bf16's rounding step.
    exact = predict_logits(model, data.features, data.val_ends, data.seq_len, 64, "fp32")
    gap = float((logits - exact).abs().max())
    assert 0 < gap < 0.05


def _trained_weights(seed: int, threads: int, model_type: str = "lstm") -> dict:
    """fit from the same initial weights, shuffled by train.seed, at a given thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_model(ModelConfig(model_type, 16, 1, 0.0), n_features=3)
        fit(model, learnable_data(rows=2000), train_config(epochs=2, batch_size=256, seed=seed))
    finally:
        torch.set_num_threads(previous)
    return model.state_dict()


def test_train_seed_sets_the_shuffle_and_the_thread_count_does_not_change_the_weights():
    """A fit that ignored train.seed would pass test_same_seed_gives_identical_training (a
    fresh torch.Generator has a fixed seed); here another seed must move the weights. And 1
    or 2 threads must give the same bits, as docs/pipeline.md says."""
    one_thread = _trained_weights(seed=1, threads=1)
    assert all(torch.equal(one_thread[k], v) for k, v in _trained_weights(1, threads=2).items())
    other_seed = _trained_weights(seed=2, threads=1)
    assert not all(torch.equal(one_thread[k], v) for k, v in other_seed.items())


def test_divergence_is_reported_as_a_parameter_problem():
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    data = learnable_data()
    poisoned = dataclasses.replace(data, features=data.features * float("inf"))
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        fit(model, poisoned, train_config(epochs=2, grad_clip=0.0))


def test_a_validation_loss_that_is_never_finite_is_reported_as_divergence():
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    data = learnable_data()
    features = data.features.clone()
    features[data.val_ends] = float("nan")
    poisoned = dataclasses.replace(data, features=features)
    with pytest.raises(ConfigError, match="the validation loss was never finite"):
        fit(model, poisoned, train_config(epochs=2))


def test_threads_auto_is_one_inside_dvc_temporary_workspaces_and_all_cores_elsewhere(tmp_path):
    queued = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    assert in_dvc_temp_workspace(queued)
    assert not in_dvc_temp_workspace(tmp_path / "repo")
    assert resolve_threads("auto", queued) == 1
    assert resolve_threads("auto", tmp_path) == len(os.sched_getaffinity(0))
    assert resolve_threads(3, queued) == 3


def test_cuda_without_a_gpu_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match=r"train\.device = 'cuda'"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


class EndMinusStart(torch.nn.Module):
    """A window's last row minus its first as logits (3 features), recording each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[torch.Tensor] = []

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        self.batches.append(windows)
        return windows[:, -1, :] - windows[:, 0, :]


@pytest.mark.parametrize(("pad", "sizes"), [(False, [4, 2]), (True, [4, 4])])
def test_predict_logits_scores_every_window_once_and_pads_the_last_batch_with_its_last(pad, sizes):
    """Windows of seq_len 5 end at `ends`; padding adds copies of the last window to the
    model's input and drops their logits."""
    features = torch.arange(60, dtype=torch.float32).reshape(20, 3) ** 2
    ends = torch.tensor([4, 5, 9, 12, 13, 19])
    model = EndMinusStart().train()
    logits = predict_logits(model, features, ends, 5, 4, "fp32", pad=pad)
    assert not model.training
    assert torch.equal(logits, features[ends] - features[ends - 4])
    assert [len(batch) for batch in model.batches] == sizes
    assert all(batch.shape[1:] == (5, 3) for batch in model.batches)
    if pad:
        assert torch.equal(model.batches[1][1:], model.batches[1][1:2].expand(3, 5, 3))
    empty = predict_logits(model, features, ends[:0], 5, 4, pad=pad)
    assert empty.shape == (0, 3) and empty.dtype == torch.float32


def test_training_data_holds_float32_features_int64_classes_label_plus_one_and_ends():
    features = np.arange(12, dtype=np.float64).reshape(4, 3)[:, ::-1]
    labels = np.array([-1, 0, 1, 1], dtype=np.int8)
    data = TrainingData.from_arrays(
        features, labels, np.array([2, 3]), np.array([3]), 2, torch.device("cpu")
    )
    assert data.features.dtype == torch.float32
    assert torch.equal(data.features, torch.tensor(features.copy(), dtype=torch.float32))
    assert data.classes.dtype == torch.int64 and data.classes.tolist() == [0, 1, 2, 2]
    assert data.train_ends.dtype == data.val_ends.dtype == torch.int64
    assert data.train_ends.tolist() == [2, 3] and data.val_ends.tolist() == [3]
    assert data.seq_len == 2


def test_fold_workers_auto_is_every_core_up_to_the_folds_except_where_one_is_better(
    monkeypatch,
):
    """One worker in DVC's temporary workspaces, on CUDA and with threads set; never more
    workers than folds, never fewer than one."""
    monkeypatch.setattr(runtime_module, "usable_cores", lambda: 3)
    monkeypatch.setattr(runtime_module, "in_dvc_temp_workspace", lambda *args: False)
    auto = train_config(fold_workers="auto", threads="auto")
    cpu = torch.device("cpu")
    assert resolve_fold_workers(auto, 8, cpu) == 3
    assert resolve_fold_workers(auto, 2, cpu) == 2
    assert resolve_fold_workers(auto, 0, cpu) == 1
    assert resolve_fold_workers(auto, 8, torch.device("cuda")) == 1
    assert resolve_fold_workers(dataclasses.replace(auto, threads=2), 8, cpu) == 1
    assert resolve_fold_workers(dataclasses.replace(auto, fold_workers=5), 8, cpu) == 5
    assert resolve_fold_workers(dataclasses.replace(auto, fold_workers=5), 4, cpu) == 4
    assert resolve_fold_workers(dataclasses.replace(auto, fold_workers=1), 8, cpu, RANK_1) == 1
    monkeypatch.setattr(runtime_module, "in_dvc_temp_workspace", lambda *args: True)
    assert resolve_fold_workers(auto, 8, cpu) == 1


RANK_1 = Ranks(1, 2, 1, 2)


@pytest.fixture
def torch_settings():
    """Puts back the thread count and deterministic-algorithm flags a test changes."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def test_configure_torch_sets_the_device_threads_and_deterministic_numerics(
    torch_settings, monkeypatch, capsys
):
    asked = []
    monkeypatch.setattr(runtime_module, "has_native_bf16", lambda device: asked.append(device))
    device = configure_torch(train_config(device="cpu", threads=1, precision="bf16"))
    assert device == torch.device("cpu") and asked == [device]
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert float(torch.tensor(1e-39)) == 0.0  # denormals flushed
    monkeypatch.setattr(runtime_module, "usable_cores", lambda: 4)
    monkeypatch.setattr(runtime_module, "in_dvc_temp_workspace", lambda *args: False)
    configure_torch(train_config(device="cpu", threads="auto", precision="fp32"), RANK_1)
    assert torch.get_num_threads() == 2
    configure_torch(train_config(device="cpu", threads="auto", precision="fp32"))
    assert torch.get_num_threads() == 4
    assert capsys.readouterr().err == ""


def test_bf16_without_native_support_is_noted_and_cuda_numerics_only_warn(
    torch_settings, monkeypatch, capsys
):
    monkeypatch.setattr(runtime_module, "has_native_bf16", lambda device: False)
    configure_torch(train_config(device="cpu", threads=1, precision="fp32"))
    assert capsys.readouterr().err == ""
    configure_torch(train_config(device="cpu", threads=1, precision="bf16"))
    assert capsys.readouterr().err == (
        "note: train.precision = 'bf16' but this cpu has no native bf16 support; it is "
        "emulated and likely slower than 'fp32' here\n"
    )
    set_numerics(torch.device("cuda"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()


def test_native_bf16_asks_for_hardware_support_and_is_none_when_torch_cannot_tell(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kwargs: asked.append(kwargs))
    has_native_bf16(torch.device("cuda"))
    assert asked == [{"including_emulation": False}]
    for avx512, amx, expected in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value)
        assert has_native_bf16(torch.device("cpu")) is expected
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert has_native_bf16(torch.device("cpu")) is None


def test_autocast_is_bf16_on_the_device_for_bf16_and_nothing_for_fp32():
    cpu = torch.device("cpu")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_validation_across_ranks_sums_each_windows_loss_and_hit_exactly_once(monkeypatch):
    """Three ranks' shares (all_sum recorded, not reduced) add up to one process's figures;
    a rank's own call returns its share's mean; no windows anywhere gives NaN."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("gru", 4, 1, 0.0), n_features=3)
    data = learnable_data()
    shares = []
    monkeypatch.setattr(fit_module, "all_sum", lambda totals: shares.append(totals) or totals)
    plain_loss, plain_accuracy = _validation(model, data, 64, "fp32", None)
    assert shares == []
    own = [_validation(model, data, 64, "fp32", Ranks(r, 3, r, 3)) for r in range(3)]
    loss_sum, correct, count = torch.stack(shares).sum(dim=0).tolist()
    assert [share.dtype for share in shares] == [torch.float64] * 3
    assert [int(share[2]) for share in shares] == [99, 99, 98]
    assert count == len(data.val_ends) == 296
    assert loss_sum / count == pytest.approx(plain_loss, rel=1e-6)
    assert correct / count == pytest.approx(plain_accuracy, abs=1e-7)
    assert own[2] == (float(shares[2][0]) / 98, float(shares[2][1]) / 98)
    nowhere = dataclasses.replace(data, val_ends=data.val_ends[:2])
    assert np.isnan(_validation(model, nowhere, 64, "fp32", Ranks(2, 3, 2, 3))).all()


def test_device_auto_takes_a_visible_gpu_and_a_named_device_is_that_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError) as no_gpu:
        resolve_device("cuda")
    assert str(no_gpu.value) == (
        "train.device = 'cuda' but no CUDA GPU is available here; use 'auto' or 'cpu'"
    )


def _linear_fit(**changes) -> tuple[dict, dict, object]:
    """Initial and fitted weights of a seeded linear model, and the fit's result (fp32)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    result = fit(model, learnable_data(), train_config(precision="fp32", **changes))
    return initial, model.state_dict(), result


def test_with_a_rate_too_small_to_learn_an_epochs_figures_are_the_initial_models():
    """The epoch's train loss is the mean over every train window, its val figures those of
    all val windows; an equal val loss is no gain, so epoch 1 stays the best."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    data = learnable_data()
    figures = {}
    for part, ends in (("train", data.train_ends), ("val", data.val_ends)):
        logits = predict_logits(model, data.features, ends, data.seq_len, 4096)
        classes = data.classes[ends]
        loss = float(torch.nn.functional.cross_entropy(logits, classes))
        figures[part] = (loss, float((logits.argmax(dim=1) == classes).float().mean()))
    _, _, result = _linear_fit(epochs=5, patience=2, learning_rate=1e-12, batch_size=64)
    first = result.history[0]
    assert first.train_loss == pytest.approx(figures["train"][0], rel=1e-6)
    assert (first.val_loss, first.val_accuracy) == pytest.approx(figures["val"], rel=1e-6)
    assert [epoch.val_loss for epoch in result.history] == [first.val_loss] * 3
    assert (result.best_epoch, result.epochs_run, result.stop_reason) == (1, 3, "early_stopping")
    assert result.best_val_loss == first.val_loss


def test_a_fit_that_runs_out_of_epochs_says_so():
    _, _, result = _linear_fit(epochs=2, patience=5, learning_rate=0.01)
    assert (result.epochs_run, result.stop_reason) == (2, "max_epochs")
    assert len(result.history) == 2


def test_grad_clip_bounds_the_gradient_norm_and_zero_turns_it_off():
    """Adam's step is about the rate whatever the gradient's scale, unless the gradient is
    clipped below Adam's epsilon (1e-8): then the weights barely move."""
    initial, free, _ = _linear_fit(epochs=1, learning_rate=0.01, grad_clip=0.0)
    _, clipped, _ = _linear_fit(epochs=1, learning_rate=0.01, grad_clip=1e-12)
    assert max(float((free[k] - initial[k]).abs().max()) for k in initial) > 0.04
    assert max(float((clipped[k] - initial[k]).abs().max()) for k in initial) < 1e-5


def test_weight_decay_reaches_the_optimiser():
    """A huge weight decay makes every gradient point away from zero: every weight well
    above the epoch's few steps of 0.01 shrinks, which without decay some do not."""
    changes = {"epochs": 1, "learning_rate": 0.01, "grad_clip": 0.0}

    def shrunk(weights: dict, initial: dict) -> torch.Tensor:
        large = initial["head.weight"].abs() > 0.1
        return (weights["head.weight"].abs() < initial["head.weight"].abs())[large]

    initial, decayed, _ = _linear_fit(weight_decay=1e6, **changes)
    _, plain, _ = _linear_fit(weight_decay=0.0, **changes)
    assert bool(shrunk(decayed, initial).all())
    assert not bool(shrunk(plain, initial).all())


def test_divergence_messages_name_the_epoch_and_the_rate():
    data = learnable_data()
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    poisoned = dataclasses.replace(data, features=data.features * float("inf"))
    with pytest.raises(ConfigError) as diverged:
        fit(model, poisoned, train_config(epochs=2, grad_clip=0.0))
    assert str(diverged.value) == (
        "training diverged: the training loss is nan in epoch 1; lower train.learning_rate "
        "(now 0.001) or set train.grad_clip"
    )
    features = data.features.clone()
    features[data.val_ends] = float("nan")
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    seen = []
    with pytest.raises(ConfigError) as never_finite:
        poisoned = dataclasses.replace(data, features=features)
        fit(model, poisoned, train_config(epochs=5, patience=2), seen.append)
    # A NaN epoch is no gain: the fit stops after `patience` of them, not sooner.
    assert len(seen) == 2
    assert str(never_finite.value) == (
        "training diverged: the validation loss was never finite; lower train.learning_rate "
        "(now 0.001) or set train.grad_clip"
    )


def test_data_parallel_pins_a_cuda_model_to_its_device_and_leaves_a_cpu_one_unpinned(
    monkeypatch,
):
    from torch.nn import parallel

    wrapped = []
    monkeypatch.setattr(
        parallel, "DistributedDataParallel", lambda model, **kwargs: wrapped.append(kwargs)
    )
    model = torch.nn.Linear(2, 2)
    fit_module._data_parallel(model, torch.device("cuda", 1))
    fit_module._data_parallel(model, torch.device("cpu"))
    assert wrapped == [{"device_ids": [torch.device("cuda", 1)]}, {"device_ids": None}]


def test_configure_torch_gives_a_cuda_rank_its_local_gpu(torch_settings, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    config = train_config(device="cuda", threads=1, precision="fp32")
    assert configure_torch(config, RANK_1) == torch.device("cuda", 1)
