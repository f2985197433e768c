"""Progress of long work on stderr: a tqdm bar in a terminal, a few plain lines in a log.

DVC's captured stage output and CI logs are not terminals, and a bar redrawn with carriage
returns becomes thousands of lines there. So off a terminal, work that is still running
after PLAIN_AFTER_S seconds prints one line per tenth done (at most 10, then one "done"
line); quick work prints nothing, which keeps short runs and the tests' exact output quiet.
FINSEQ_PROGRESS=0 turns progress off, FINSEQ_PROGRESS=1 prints the plain lines at once.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")

PLAIN_AFTER_S = 2.0
STEPS = 10


class Progress:
    """Counts `total` units of work named `what`; `advance` after each."""

    def __init__(self, total: int, what: str, unit: str) -> None:
        self.total, self.what, self.unit = total, what, unit
        self.done = 0
        self.started = time.monotonic()
        self.lines = 0
        setting = os.environ.get("FINSEQ_PROGRESS", "")
        self.off = setting == "0" or total <= 0
        self.eager = setting == "1"
        self.bar = None
        if not self.off and not self.eager and sys.stderr.isatty():
            self.bar = tqdm(
                total=total,
                desc=what,
                unit=f" {unit}",
                file=sys.stderr,
                mininterval=0.5,
                leave=False,
            )
        self.next_step = 1

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.off:
            return
        if self.bar is not None:
            self.bar.update(count)
            return
        elapsed = time.monotonic() - self.started
        reached = self.done * STEPS // self.total
        if reached >= self.next_step and (self.eager or elapsed >= PLAIN_AFTER_S):
            self._line(
                f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done // self.total}%)"
                f", {elapsed:.0f} s"
            )
            self.next_step = reached + 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines and self.next_step <= STEPS:
            self._line(
                f"done, {self.done:,} {self.unit} in {time.monotonic() - self.started:.0f} s"
            )

    def _line(self, text: str) -> None:
        print(f"{self.what}: {text}", file=sys.stderr, flush=True)
        self.lines += 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tracked(items: Iterable[Item], total: int, what: str, unit: str) -> Iterator[Item]:
    """`items`, advancing a Progress by one as each is taken (before it is handed on: a
    caller that takes the last item and then closes the generator has counted it)."""
    with Progress(total, what, unit) as progress:
        for item in items:
            progress.advance()
            yield item
