"""The two kinds of mistake a user can make: bad parameters and bad data.

Stage entry points print these as one line and exit with status 2; any other
exception is a bug in this package and keeps its traceback.
"""

import json
import os
import sys
import time


def note(message: str) -> None:
    """A remark the user should see, which does not stop the stage."""
    print(f"note: {message}", file=sys.stderr)


class UserError(Exception):
    """A problem the user can fix by editing params.yaml or the input data."""

    exit_status = 2


class ConfigError(UserError):
    """A parameter is unknown, of the wrong type, or out of range."""


class DataError(UserError):
    """An input file is missing, unreadable, or holds values the pipeline cannot use."""


class RankError(UserError):
    """A rank of a distributed training run failed; the other ranks were stopped."""


class PeerLost(UserError):
    """This rank's process group broke because another rank failed or was stopped."""

    exit_status = 3  # never the root cause: the launcher reports another rank's failure


# The exit status of a stage ended by Ctrl-C or SIGTERM (command.run_stage): 128 + SIGINT,
# as shells report an interrupted command.
INTERRUPTED_STATUS = 130

# Set in the ranks the train stage starts itself (finseq.distributed.launch_local_ranks):
# their launcher prints the failure's one line, so a rank prints none of its own.
LOCAL_LAUNCH = "FINSEQ_LOCAL_RANKS"


def in_local_rank() -> bool:
    return os.environ.get(LOCAL_LAUNCH) == "1" and "WORLD_SIZE" in os.environ


def record_failure(message: str, exit_status: int) -> None:
    """Hands a rank's one-line error to the torchelastic launcher that started it, which
    reads TORCHELASTIC_ERROR_FILE (torchrun prints it in its failure summary)."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file and "WORLD_SIZE" in os.environ:
        with open(error_file, "w") as handle:
            record = {"message": message, "timestamp": int(time.time()), "exit_status": exit_status}
            json.dump(record, handle)
