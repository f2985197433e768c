"""Training across processes and machines: torch.distributed ranks, started by torchrun.

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment) the train stage runs as
one rank of a process group: gloo on CPU, NCCL on CUDA. With `train.processes` above 1 and no
torchrun, the stage starts that many ranks on this host through torch's elastic launcher,
the engine torchrun itself runs, and then waits for them.

Every rank draws the same seeded permutation of the training windows and takes its slice of
each global batch of `train.batch_size` windows, so the batches do not depend on the world
size (a DistributedSampler with per-rank seeds would make them). Rank 0 alone logs to
DVCLive and writes outputs; the others train beside it and write nothing.

A rank that fails records its one-line error where the launcher reads it
(TORCHELASTIC_ERROR_FILE); the launcher then stops the other ranks, and the stage prints
the first failure's line and exits 2.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import distributed

from finseq.errors import (
    INTERRUPTED_STATUS,
    LOCAL_LAUNCH,
    ConfigError,
    PeerLost,
    RankError,
)

# A rank that waits longer than this in one collective (a peer hung rather than died) fails.
COLLECTIVE_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the process group (torchrun's environment variables)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_environment(environ: dict[str, str] | None = None) -> Ranks | None:
    """This process's ranks when torchrun (or the local launcher) started it, else None."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        text = environ.get(name, environ["WORLD_SIZE"] if name == "LOCAL_WORLD_SIZE" else None)
        if text is None or not text.strip().isdigit():
            raise ConfigError(
                f"environment variable {name} = {text!r} is not a non-negative integer; "
                "start the ranks with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK"
            )
        values[name.lower()] = int(text)
    ranks = Ranks(**values)
    if not (ranks.rank < ranks.world_size and ranks.local_rank < ranks.local_world_size):
        raise ConfigError(
            f"environment variables RANK = {ranks.rank} and LOCAL_RANK = {ranks.local_rank} "
            f"must be below WORLD_SIZE = {ranks.world_size} and LOCAL_WORLD_SIZE = "
            f"{ranks.local_world_size}"
        )
    return ranks


def rank_device(requested: torch.device, ranks: Ranks | None) -> torch.device:
    """A rank's own GPU (its LOCAL_RANK) on CUDA; the CPU is shared."""
    if requested.type != "cuda" or ranks is None:
        return requested
    if ranks.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK = {ranks.local_rank} but this machine has "
            f"{torch.cuda.device_count()} GPU(s); start at most that many ranks per machine"
        )
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


@contextmanager
def process_group(ranks: Ranks | None, device: torch.device) -> Iterator[None]:
    """Joins the process group of `ranks` (nothing to join for a single process)."""
    if ranks is None:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    distributed.init_process_group(
        backend,
        timeout=COLLECTIVE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield
    except RuntimeError as exc:
        if not lost_a_peer(exc):
            raise
        raise PeerLost(
            f"rank {ranks.rank} lost contact with another rank, which failed or was stopped"
        ) from None
    finally:
        distributed.destroy_process_group()


def lost_a_peer(exc: BaseException) -> bool:
    """Whether a collective failed because another rank went away. Gloo raises a plain
    RuntimeError from its transport (inside DistributedDataParallel's backward too)."""
    text = str(exc)
    return isinstance(exc, distributed.DistError) or any(
        marker in text for marker in ("gloo", "NCCL", "Connection reset", "Connection closed")
    )


def rank_slice(ends: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous share of a batch: sizes differ by at most one, some may be empty."""
    return torch.tensor_split(ends, ranks.world_size)[ranks.rank]


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `values` over every rank (in place, and returned)."""
    distributed.all_reduce(values, op=distributed.ReduceOp.SUM)
    return values


def launch_local_ranks(processes: int, module: str) -> None:
    """Runs `python -m module` as `processes` ranks on this host and waits for all of them.

    torch's elastic launcher (what torchrun runs) sets each rank's environment, watches
    them, and stops every rank as soon as one fails. The first failure becomes one line.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=f"finseq-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    # The launcher logs every start and stop, on loggers that each set their own level; the
    # ranks' output and the one line below are what users read.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ[LOCAL_LAUNCH] = "1"
    try:
        elastic_launch(config, sys.executable)("-m", module)
    except ChildFailedError as failed:
        raise RankError(first_failure(failed.failures)) from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        del os.environ[LOCAL_LAUNCH]


def first_failure(failures: dict) -> str:
    """The root cause among failed ranks (a rank that stopped for a peer's failure is not one),
    as one line."""

    def order(item: tuple[int, object]) -> tuple[bool, bool, int, int]:
        rank, failure = item
        peer_lost = PeerLost.exit_status in (
            failure.exitcode,
            failure.error_file_data.get("exit_status"),
        )
        # The launcher ends the other ranks with SIGTERM once one has failed: a rank dies of
        # it, or (inside command.run_stage, which turns it into KeyboardInterrupt) exits 130.
        stopped = failure.exitcode in (-signal.SIGTERM, INTERRUPTED_STATUS)
        return (peer_lost, stopped, failure.timestamp, rank)

    rank, failure = min(failures.items(), key=order)
    data = failure.error_file_data
    if "timestamp" in data and isinstance(data.get("message"), str):  # record_failure's line
        return data["message"]
    if failure.exitcode < 0:
        return (
            f"training rank {rank} was ended by {failure.signal_name()}; every rank stopped "
            "and no output of this stage was written"
        )
    return (
        f"training rank {rank} exited with status {failure.exitcode} (its traceback is "
        "above); every rank stopped and no output of this stage was written"
    )
