"""Where and how a run computes: cores, device, threads, precision. Every `auto` of
params.yaml is resolved here, once.

torch is imported inside the functions that need it, so that prepare and window, which
never touch a tensor, start without it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from finseq.errors import ConfigError, note

if TYPE_CHECKING:
    import torch

    from finseq.distributed import Ranks
    from finseq.params import TrainConfig


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_dvc_temp_workspace(cwd: str | Path | None = None) -> bool:
    """True inside the temporary copies where `dvc queue` and `dvc exp run --temp` run."""
    return f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}" in f"{Path(cwd or os.getcwd())}{os.sep}"


def resolve_data_workers(requested: int | str, n_tasks: int) -> int:
    """Processes that read and featurise files (or a panel's series) side by side
    (data.workers).

    `auto`: one inside DVC's temporary experiment workspaces (queued experiments already run
    side by side), else every usable core; never more than the tasks.
    """
    if requested != "auto":
        workers = int(requested)
    else:
        workers = 1 if in_dvc_temp_workspace() else usable_cores()
    return max(1, min(workers, n_tasks))


def resolve_device(requested: str) -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else the CPU; `cuda` without a GPU is an error."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device = 'cuda' but no CUDA GPU is available here; use 'auto' or 'cpu'"
        )
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_fold_workers(
    config: TrainConfig, n_folds: int, device: torch.device, ranks: Ranks | None = None
) -> int:
    """Processes that train folds side by side.

    `auto`: one (in-process) inside DVC's temporary experiment workspaces, on CUDA, when
    `threads` is set to a number, or in a rank of a distributed run (whose folds are trained
    one after another, each by every rank); otherwise every usable core, up to the number of
    folds.
    """
    if ranks is not None:
        if config.fold_workers not in ("auto", 1):
            raise ConfigError(
                f"train.fold_workers = {config.fold_workers} under torchrun: train the folds "
                "side by side or each across ranks, not both; set train.fold_workers to 1"
            )
        workers = 1
    elif config.fold_workers != "auto":
        workers = int(config.fold_workers)
    elif in_dvc_temp_workspace() or device.type == "cuda" or config.threads != "auto":
        workers = 1
    else:
        workers = usable_cores()
    return max(1, min(workers, n_folds))


def resolve_threads(
    requested: int | str, cwd: str | Path | None = None, local_processes: int = 1
) -> int:
    """Intra-op CPU threads for torch.

    `auto`: one thread inside DVC's temporary experiment workspaces, where queue
    workers run side by side and every extra thread would fight another
    experiment for a core; otherwise every core this process may use, shared evenly by
    the `local_processes` ranks of a distributed run on this machine.
    """
    if requested != "auto":
        return int(requested)
    return 1 if in_dvc_temp_workspace(cwd) else max(1, usable_cores() // local_processes)


def fold_worker_threads(requested: int | str) -> int:
    """Threads of each fold worker: one for `auto` (the workers already take every core)."""
    return 1 if requested == "auto" else int(requested)


def has_native_bf16(device: torch.device) -> bool | None:
    """Whether `device` computes bf16 in hardware (not emulated); None when torch cannot tell."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for; parameters, loss and optimiser state stay fp32."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_numerics(device: torch.device) -> None:
    """Deterministic kernels and flushed denormals, for every run of a model."""
    import torch

    # Gradients through saturated gates can become denormal floats, which x86 CPUs handle
    # many times slower; flushing them (|x| < 1.2e-38) to zero changes nothing that matters.
    # NumPy computes its float limits lazily and warns if it first does so after the flush.
    for dtype in (np.float32, np.float64):
        np.finfo(dtype)
    torch.set_flush_denormal(True)
    # CPU kernels are deterministic; on CUDA some (e.g. cuDNN RNN backward) are not, so warn
    # only. This sets the flag torch.use_deterministic_algorithms sets, without also
    # importing torch's compiler (inductor, about 3 s) to set its own flag: finseq never
    # compiles a model.
    torch.set_deterministic_debug_mode("warn" if device.type == "cuda" else "error")


def configure_torch(config: TrainConfig, ranks: Ranks | None = None) -> torch.device:
    """Device, CPU threads and numerics for one run (or one rank of it); returns the device."""
    import torch

    from finseq.distributed import rank_device

    device = rank_device(resolve_device(config.device), ranks)
    local_processes = 1 if ranks is None else ranks.local_world_size
    torch.set_num_threads(resolve_threads(config.threads, local_processes=local_processes))
    set_numerics(device)
    if config.precision == "bf16" and has_native_bf16(device) is False:
        note(
            f"train.precision = 'bf16' but this {device.type} has no native bf16 support; "
            "it is emulated and likely slower than 'fp32' here"
        )
    return device
