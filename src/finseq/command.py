"""Runs a stage or a command: a user's mistake or an interruption ends it with one line.

Every `python -m finseq.stages.<stage>` and the `finseq` commands go through `run_stage`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from finseq.errors import INTERRUPTED_STATUS, UserError, in_local_rank, record_failure


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _exit(status: int) -> NoReturn:
    """Exits with `status`. A rank of a distributed run whose peers are gone would wait in
    the process group's teardown at interpreter exit, so it leaves at once (its outputs
    were already unwound)."""
    if "WORLD_SIZE" in os.environ:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def run_stage(
    main: Callable[[], None], interrupted: str = "outputs of this stage were not written"
) -> None:
    """Runs a stage (or a command); a user's mistake or an interruption ends it with one line
    and a non-zero exit.

    SIGTERM is turned into KeyboardInterrupt so that, like Ctrl-C, it unwinds through
    the atomic writers and leaves no temporary or half-written file behind. The ranks the
    train stage starts itself stay quiet: their launcher prints the one line.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except UserError as exc:
        # A rank of a distributed run hands its line to the launcher, which prints the first.
        record_failure(str(exc), exc.exit_status)
        if not in_local_rank():
            print(f"error: {exc}", file=sys.stderr)
        _exit(exc.exit_status)
    except KeyboardInterrupt:
        if not in_local_rank():
            print(f"error: interrupted; {interrupted}", file=sys.stderr)
        _exit(INTERRUPTED_STATUS)
    except BrokenPipeError:
        # The reader of stdout went away (`finseq predict ... | head`): stop quietly, as
        # command-line tools do, without a traceback when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)


class OneLineParser(argparse.ArgumentParser):
    """argparse with a usage mistake as every other mistake is worded: one line (`error:
    PROG: message`, pointing at --help) and exit 2, not the usage and a second line."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(2)
