"""Training across ranks: each rank's slice of a batch, exact reductions, the first failure.

Two real ranks (`dvc exp run -S train.processes=2`, torchrun across two nodes, a rank killed
mid-epoch) are in tests/test_scale.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_params, tiny_params_dict
from test_training import learnable_data
from torch import distributed
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher import api as launcher_api

from finseq.distributed import (
    Ranks,
    all_sum,
    first_failure,
    launch_local_ranks,
    lost_a_peer,
    process_group,
    rank_device,
    rank_slice,
    ranks_from_environment,
)
from finseq.errors import LOCAL_LAUNCH, ConfigError, PeerLost, RankError
from finseq.fit import _batch_loss, fit
from finseq.models import build_model
from finseq.params import ModelConfig, parse_params
from finseq.runtime import resolve_fold_workers, resolve_threads
from finseq.windows import window_offsets

TORCHRUN_ENVIRONMENT = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}


def test_ranks_come_from_torchruns_environment_and_none_without_it():
    assert ranks_from_environment({}) is None
    ranks = ranks_from_environment(TORCHRUN_ENVIRONMENT)
    assert ranks == Ranks(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert not ranks.is_main
    assert Ranks(0, 4, 0, 2).is_main


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("RANK", "one", "RANK = 'one'"),
        ("LOCAL_RANK", "-1", "LOCAL_RANK = '-1'"),
        ("RANK", "4", "RANK = 4"),
        ("LOCAL_RANK", "2", "LOCAL_RANK = 2"),
    ],
)
def test_a_bad_rank_variable_is_named(name, value, named):
    with pytest.raises(ConfigError, match=named):
        ranks_from_environment({**TORCHRUN_ENVIRONMENT, name: value})


def test_every_window_of_a_batch_is_in_exactly_one_ranks_slice_in_order():
    for world in (1, 2, 3, 7):
        for size in (0, 1, 5, 6, 64):
            ends = torch.arange(100, 100 + size)
            slices = [rank_slice(ends, Ranks(rank, world, rank, world)) for rank in range(world)]
            assert torch.equal(torch.cat(slices), ends)
            sizes = [len(part) for part in slices]
            assert max(sizes) - min(sizes) <= 1


def _gradients(model: torch.nn.Module) -> list[torch.Tensor]:
    return [parameter.grad.clone() for parameter in model.parameters()]


@pytest.mark.parametrize("batch", [6, 5, 1], ids=["even", "uneven", "one-window"])
def test_the_ranks_losses_average_to_the_batch_mean_and_its_gradient(batch):
    """What DistributedDataParallel averages over two ranks is one process's batch loss and
    gradient; a rank with an empty slice (a one-window batch) adds nothing."""
    data = learnable_data()
    config = dataclasses.replace(tiny_params().train, precision="fp32")
    torch.manual_seed(0)
    model = build_model(ModelConfig("gru", 4, 1, 0.0), n_features=3)
    offsets = window_offsets(data.seq_len, torch.device("cpu"))
    ends = data.train_ends[:batch]

    whole, whole_sum = _batch_loss(model, data, ends, offsets, config, None)
    model.zero_grad()
    whole.backward()
    expected = _gradients(model)

    losses, sums, gradients = [], [], []
    for rank in range(2):
        loss, loss_sum = _batch_loss(model, data, ends, offsets, config, Ranks(rank, 2, rank, 2))
        model.zero_grad()
        loss.backward()
        losses.append(loss.detach())
        sums.append(loss_sum)
        gradients.append(_gradients(model))

    assert float(sum(losses) / 2) == pytest.approx(float(whole.detach()), rel=1e-6)
    assert float(sum(sums)) == pytest.approx(float(whole_sum), rel=1e-6)
    for index, gradient in enumerate(expected):
        averaged = (gradients[0][index] + gradients[1][index]) / 2
        torch.testing.assert_close(averaged, gradient, rtol=1e-5, atol=1e-7)
    if batch == 1:
        assert float(losses[1]) == 0.0 and float(sums[1]) == 0.0


@pytest.fixture
def single_rank(tmp_path):
    """A real gloo process group of one rank, in this process."""
    store = distributed.FileStore(str(tmp_path / "store"), 1)
    distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield Ranks(0, 1, 0, 1)
    distributed.destroy_process_group()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_under_a_process_group_trains_as_one_process_does(single_rank, precision):
    """The distributed path (DistributedDataParallel, summed losses, reduced val figures)
    on one rank: the same epochs, losses and weights as without a process group, in either
    precision (a rank that trained or validated in fp32 would differ under bf16)."""
    config = dataclasses.replace(tiny_params().train, precision=precision, epochs=2, patience=2)
    results, weights = [], []
    for ranks in (None, single_rank):
        torch.manual_seed(0)
        model = build_model(ModelConfig("lstm", 8, 1, 0.0), n_features=3)
        results.append(fit(model, learnable_data(), config, ranks=ranks))
        weights.append(model.state_dict())
    plain, ranked = results
    assert ranked.best_epoch == plain.best_epoch and ranked.epochs_run == plain.epochs_run == 2
    for one, other in zip(plain.history, ranked.history, strict=True):
        assert other.train_loss == pytest.approx(one.train_loss, rel=1e-6)
        assert other.val_loss == pytest.approx(one.val_loss, rel=1e-6)
        assert other.val_accuracy == pytest.approx(one.val_accuracy, abs=1e-6)
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=1e-5)


def _raise_inside_a_group(monkeypatch, error: Exception) -> None:
    """process_group (init and destroy stubbed out) around a block that raises `error`."""
    monkeypatch.setattr(distributed, "init_process_group", lambda *args, **kwargs: None)
    monkeypatch.setattr(distributed, "destroy_process_group", lambda: None)
    with process_group(Ranks(1, 2, 1, 2), torch.device("cpu")):
        raise error


def test_a_collective_that_loses_its_peer_becomes_one_line_and_other_errors_keep_theirs(
    monkeypatch,
):
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")
    assert lost_a_peer(gloo) and not lost_a_peer(RuntimeError("shape mismatch"))
    with pytest.raises(PeerLost, match=r"^rank 1 lost contact with another rank"):
        _raise_inside_a_group(monkeypatch, gloo)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _raise_inside_a_group(monkeypatch, RuntimeError("shape mismatch"))
    assert PeerLost.exit_status == 3


def _failure(exitcode: int, timestamp: int, data: dict | None = None) -> SimpleNamespace:
    def signal_name() -> str:
        return signal.Signals(-exitcode).name

    return SimpleNamespace(
        exitcode=exitcode,
        timestamp=timestamp,
        error_file_data=data or {"message": "<NONE>"},
        signal_name=signal_name,
    )


def test_the_first_failure_is_the_root_cause_not_the_ranks_stopped_because_of_it():
    killed = _failure(-signal.SIGKILL, 12)
    lost = _failure(3, 10, {"message": "rank 0 lost contact", "timestamp": 10, "exit_status": 3})
    stopped = _failure(-signal.SIGTERM, 11)
    assert first_failure({0: lost, 1: killed, 2: stopped}) == (
        "training rank 1 was ended by SIGKILL; every rank stopped and no output of this stage "
        "was written"
    )
    # A rank that recorded the peer loss and was then ended by the launcher is still no cause.
    lost_then_stopped = _failure(-signal.SIGTERM, 10, lost.error_file_data)
    assert first_failure({0: lost_then_stopped, 1: killed}).startswith("training rank 1 ")
    # Nor is one whose run_stage caught the launcher's SIGTERM and exited 130, however early
    # the launcher stamped it.
    interrupted = _failure(130, 1)
    assert first_failure({0: interrupted, 1: killed}).startswith("training rank 1 was ended")
    user_error = _failure(2, 13, {"message": "training diverged: ...", "timestamp": 13})
    assert first_failure({0: lost, 1: user_error, 2: stopped}) == "training diverged: ..."
    earlier = _failure(2, 9, {"message": "earlier", "timestamp": 9})
    assert first_failure({1: user_error, 3: earlier}) == "earlier"
    assert first_failure({2: _failure(1, 5)}) == (
        "training rank 2 exited with status 1 (its traceback is above); every rank stopped "
        "and no output of this stage was written"
    )


def test_processes_and_fold_workers_are_one_or_the_other():
    assert parse_params(tiny_params_dict(train={"processes": 2})).train.processes == 2
    parse_params(tiny_params_dict(train={"processes": 2, "fold_workers": 1}))
    with pytest.raises(
        ConfigError, match=re.escape("train.processes = 2 with train.fold_workers = 2")
    ):
        parse_params(tiny_params_dict(train={"processes": 2, "fold_workers": 2}))
    config = dataclasses.replace(tiny_params().train, fold_workers="auto", threads="auto")
    cpu = torch.device("cpu")
    assert resolve_fold_workers(config, 8, cpu, Ranks(0, 2, 0, 2)) == 1
    with pytest.raises(ConfigError) as both:
        resolve_fold_workers(dataclasses.replace(config, fold_workers=2), 8, cpu, Ranks(0, 2, 0, 2))
    assert str(both.value) == (
        "train.fold_workers = 2 under torchrun: train the folds side by side or each across "
        "ranks, not both; set train.fold_workers to 1"
    )


def test_threads_auto_shares_the_cores_among_this_machines_ranks(monkeypatch, tmp_path):
    import finseq.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "usable_cores", lambda: 8)
    assert resolve_threads("auto", tmp_path, local_processes=1) == 8
    assert resolve_threads("auto", tmp_path, local_processes=2) == 4
    assert resolve_threads("auto", tmp_path, local_processes=3) == 2
    assert resolve_threads("auto", tmp_path, local_processes=16) == 1
    assert resolve_threads(3, tmp_path, local_processes=2) == 3


def test_local_world_size_defaults_to_the_world_and_variables_may_carry_spaces(monkeypatch):
    assert ranks_from_environment({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "2"}) == Ranks(
        1, 3, 2, 3
    )
    assert ranks_from_environment({**TORCHRUN_ENVIRONMENT, "RANK": " 2\n"}).rank == 2
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ranks_from_environment() is None
    for name, value in TORCHRUN_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    assert ranks_from_environment() == Ranks(3, 4, 1, 2)


def test_a_missing_or_out_of_range_rank_variable_is_explained_in_full():
    with pytest.raises(ConfigError) as missing:
        ranks_from_environment({"WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert str(missing.value) == (
        "environment variable RANK = None is not a non-negative integer; start the ranks with "
        "torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK"
    )
    with pytest.raises(ConfigError) as beyond:
        ranks_from_environment({**TORCHRUN_ENVIRONMENT, "LOCAL_RANK": "2"})
    assert str(beyond.value) == (
        "environment variables RANK = 3 and LOCAL_RANK = 2 must be below WORLD_SIZE = 4 and "
        "LOCAL_WORLD_SIZE = 2"
    )


def test_a_rank_on_cuda_takes_the_gpu_of_its_local_rank_and_the_cpu_is_shared(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert rank_device(cpu, Ranks(3, 4, 1, 2)) is cpu
    assert rank_device(cuda, None) is cuda
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert rank_device(cuda, Ranks(3, 4, 1, 2)) == torch.device("cuda", 1)
    assert chosen == [1]
    with pytest.raises(ConfigError) as too_few:
        rank_device(cuda, Ranks(2, 4, 2, 3))
    assert str(too_few.value) == (
        "LOCAL_RANK = 2 but this machine has 2 GPU(s); start at most that many ranks per machine"
    )
    assert chosen == [1]


@pytest.fixture
def group_calls(monkeypatch) -> list[tuple]:
    """init_process_group and destroy_process_group, recorded instead of run."""
    calls: list[tuple] = []
    monkeypatch.setattr(
        distributed, "init_process_group", lambda *args, **kwargs: calls.append((args, kwargs))
    )
    monkeypatch.setattr(distributed, "destroy_process_group", lambda: calls.append("destroy"))
    return calls


def test_a_process_group_is_gloo_on_cpu_nccl_on_cuda_and_always_destroyed(group_calls):
    with process_group(None, torch.device("cpu")):
        pass
    assert group_calls == []
    with process_group(Ranks(0, 2, 0, 2), torch.device("cpu")):
        assert len(group_calls) == 1
    cuda = torch.device("cuda", 1)
    with (
        pytest.raises(ValueError, match="not a collective"),
        process_group(Ranks(1, 2, 1, 2), cuda),
    ):
        raise ValueError("not a collective")
    timeout = {"timeout": timedelta(minutes=5)}
    assert group_calls == [
        (("gloo",), {**timeout, "device_id": None}),
        "destroy",
        (("nccl",), {**timeout, "device_id": cuda}),
        "destroy",
    ]


def test_a_lost_peer_is_one_line_without_the_transport_error_behind_it(group_calls):
    with pytest.raises(PeerLost) as lost, process_group(Ranks(1, 2, 1, 2), torch.device("cpu")):
        raise RuntimeError("NCCL communicator was aborted")
    assert str(lost.value) == "rank 1 lost contact with another rank, which failed or was stopped"
    assert lost.value.__cause__ is None and lost.value.__suppress_context__
    assert group_calls[-1] == "destroy"


@pytest.mark.parametrize(
    "message",
    ["[gloo] Read error", "NCCL error: unhandled", "Connection reset by peer", "Connection closed"],
)
def test_each_transport_marker_means_a_lost_peer(message):
    assert lost_a_peer(RuntimeError(f"during allreduce: {message} (rank 0)"))


def test_a_dist_error_is_a_lost_peer_and_other_errors_are_not():
    assert lost_a_peer(distributed.DistError("timed out"))
    assert not lost_a_peer(RuntimeError("Gloo? nccl? connection refused"))
    assert not lost_a_peer(ValueError("bad shape"))


def test_all_sum_reduces_in_place_with_sum_and_returns_the_tensor(monkeypatch, single_rank):
    values = torch.tensor([1.5, 2.0], dtype=torch.float64)
    assert all_sum(values) is values
    assert values.tolist() == [1.5, 2.0]
    reduced = []
    monkeypatch.setattr(distributed, "all_reduce", lambda tensor, op: reduced.append(op))
    all_sum(values)
    assert reduced == [distributed.ReduceOp.SUM]


class FakeLauncher:
    """elastic_launch's stand-in: records its config and the rank command, then raises `error`."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.launches: list[tuple] = []

    def __call__(self, config, entrypoint):
        def launch(*args):
            self.launches.append((config, entrypoint, args, os.environ.get(LOCAL_LAUNCH)))
            if self.error is not None:
                raise self.error

        return launch


def launch_with(monkeypatch, launcher: FakeLauncher) -> None:
    monkeypatch.setattr(launcher_api, "elastic_launch", launcher)
    monkeypatch.delenv(LOCAL_LAUNCH, raising=False)
    launch_local_ranks(3, "finseq.stages.train")


def test_local_ranks_run_under_the_elastic_launcher_with_one_node_and_no_restarts(monkeypatch):
    elastic = logging.getLogger("torch.distributed.elastic.test_logger")
    other = logging.getLogger("torch.distributed.test_logger")
    monkeypatch.setattr(elastic, "level", logging.INFO)
    monkeypatch.setattr(other, "level", logging.INFO)
    launcher = FakeLauncher()
    launch_with(monkeypatch, launcher)
    [(config, entrypoint, args, flag)] = launcher.launches
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (1, 1, 3)
    assert config.run_id == f"finseq-{os.getpid()}"
    assert (config.rdzv_backend, config.rdzv_endpoint) == ("c10d", "127.0.0.1:0")
    assert (config.max_restarts, config.monitor_interval) == (0, 0.1)
    assert entrypoint == sys.executable and args == ("-m", "finseq.stages.train")
    assert flag == "1" and LOCAL_LAUNCH not in os.environ
    assert elastic.level == logging.CRITICAL and other.level == logging.INFO


def test_a_failed_rank_becomes_one_line_and_a_signal_an_interrupt(monkeypatch):
    failure = _failure(1, 5)
    # Built bare: the real constructor formats torch's ProcessFailure objects.
    child_failed = ChildFailedError.__new__(ChildFailedError)
    child_failed.failures = {2: failure}
    launcher = FakeLauncher(child_failed)
    with pytest.raises(RankError) as failed:
        launch_with(monkeypatch, launcher)
    assert str(failed.value) == first_failure({2: failure})
    assert str(failed.value).startswith("training rank 2 exited with status 1 ")
    assert failed.value.__suppress_context__ and LOCAL_LAUNCH not in os.environ
    with pytest.raises(KeyboardInterrupt) as interrupted:
        launch_with(monkeypatch, FakeLauncher(SignalException("stop", signal.SIGTERM)))
    assert interrupted.value.__suppress_context__ and LOCAL_LAUNCH not in os.environ


def test_a_peer_loss_recorded_only_in_the_error_file_is_no_cause_and_ties_go_to_the_lower_rank():
    """A rank that exited 1 after writing PeerLost's status to its error file still lost a
    peer; of two root causes at the same moment the lower rank is named; a record whose
    message is torch's traceback dict, not a line, gives the exit-status line."""
    lost = _failure(1, 4, {"message": "rank 0 lost contact", "timestamp": 4, "exit_status": 3})
    cause = _failure(2, 9, {"message": "the cause", "timestamp": 9})
    assert first_failure({0: lost, 1: cause}) == "the cause"
    same = _failure(2, 9, {"message": "the other cause", "timestamp": 9})
    assert first_failure({3: cause, 1: same}) == "the other cause"
    traceback = {"message": {"message": "boom", "extraInfo": {}}, "timestamp": 7}
    assert first_failure({5: _failure(1, 7, traceback)}).startswith(
        "training rank 5 exited with status 1 "
    )


def test_fit_under_a_process_group_wraps_the_model_for_gradient_averaging(single_rank, monkeypatch):
    """One rank cannot tell an averaged gradient from its own: what fit trains is checked."""
    import finseq.fit as fit_module

    wrapped = []
    monkeypatch.setattr(
        fit_module, "_data_parallel", lambda model, device: wrapped.append((model, device)) or model
    )
    config = dataclasses.replace(tiny_params().train, precision="fp32", epochs=1)
    torch.manual_seed(0)
    model = build_model(ModelConfig("linear", 4, 1, 0.0), n_features=3)
    fit(model, learnable_data(), config, ranks=single_rank)
    fit(model, learnable_data(), config)
    assert wrapped == [(model, torch.device("cpu"))]


def _fit_as_one_of_two_ranks(rank: int, store: str, result: str) -> None:
    """One rank of test_two_real_ranks_report_the_train_loss_of_one_process (spawned)."""
    # A minute, not gloo's 30: ranks that disagree on their collectives fail the test soon.
    distributed.init_process_group(
        "gloo",
        store=distributed.FileStore(store, 2),
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=60),
    )
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = build_model(ModelConfig("lstm", 8, 1, 0.0), n_features=3)
        fitted = fit(model, learnable_data(), _two_rank_config(), ranks=Ranks(rank, 2, rank, 2))
        if rank == 0:
            history = [dataclasses.asdict(epoch) for epoch in fitted.history]
            torch.save({"history": history, "weights": model.state_dict()}, result)
    finally:
        distributed.destroy_process_group()


def _two_rank_config():
    return dataclasses.replace(tiny_params().train, precision="fp32", epochs=2, patience=2)


@pytest.mark.slow
def test_two_real_ranks_report_the_train_loss_of_one_process(tmp_path):
    """Two spawned gloo ranks: each epoch's train loss is every window's mean loss once (not
    one rank's share, not the whole batch per rank), and the weights are one process's."""
    result = tmp_path / "rank0.pt"
    torch.multiprocessing.spawn(
        _fit_as_one_of_two_ranks, args=(str(tmp_path / "store"), str(result)), nprocs=2
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks ran
    try:
        torch.manual_seed(0)
        model = build_model(ModelConfig("lstm", 8, 1, 0.0), n_features=3)
        plain = fit(model, learnable_data(), _two_rank_config())
    finally:
        torch.set_num_threads(threads)
    ranked = torch.load(result, weights_only=True)
    for one, other in zip(plain.history, ranked["history"], strict=True):
        assert other["train_loss"] == pytest.approx(one.train_loss, rel=1e-5)
        assert other["val_loss"] == pytest.approx(one.val_loss, rel=1e-5)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ranked["weights"][name], value, rtol=0, atol=1e-5)
