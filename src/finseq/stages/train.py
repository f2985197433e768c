"""train: one model per fold, each fit on its train windows and early-stopped on its val windows.

Writes models/folds/<fold>.pth for every fold and models/model.pth, the fold users take
away (walk-forward: the final refit on all the history; holdout: its one model).

With `train.processes` above 1 it starts that many ranks of itself (finseq.distributed), and
under torchrun it is one rank: every rank trains, rank 0 alone logs and writes.
"""

from finseq.command import run_stage
from finseq.params import load_params
from finseq.paths import FOLD_MODELS_DIR, MODEL_FILE, PREPARED_DIR, TRAIN_LIVE_DIR, WINDOWS_DIR


def main() -> None:
    params = load_params()
    # After the params: a bad one stops the stage before torch is imported.
    from finseq.artifacts import load_windowed
    from finseq.atomic import remove_temporaries
    from finseq.distributed import launch_local_ranks, process_group, ranks_from_environment
    from finseq.folds import train_models
    from finseq.runtime import configure_torch

    ranks = ranks_from_environment()
    if ranks is None and params.train.processes > 1:
        load_windowed(PREPARED_DIR, WINDOWS_DIR)  # stale or missing inputs are refused once
        try:
            launch_local_ranks(params.train.processes, "finseq.stages.train")
        except BaseException:
            for output in (TRAIN_LIVE_DIR, FOLD_MODELS_DIR, MODEL_FILE):
                remove_temporaries(output)  # what a killed rank 0 could not remove itself
            raise
        return
    device = configure_torch(params.train, ranks)
    data, windows = load_windowed(PREPARED_DIR, WINDOWS_DIR)
    with process_group(ranks, device):
        train_models(params, data, windows, device, ranks)


if __name__ == "__main__":
    run_stage(main)
