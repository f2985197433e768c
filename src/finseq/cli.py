"""The `finseq` command: `finseq predict` and `finseq info` (installed as a console script)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from finseq.command import run_stage

COMMANDS = {
    "predict": "probabilities of the -1/0/1 label for new bars (finseq predict --help)",
    "info": "a model card in Markdown for a checkpoint (finseq info --help)",
}


def usage() -> str:
    lines = ["usage: finseq COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def _run(command: str, rest: list[str]) -> None:
    if command == "predict":
        from finseq.predict import main as predict_main

        predict_main(rest)
    else:
        from finseq.card import main as info_main

        info_main(rest)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(usage())
        return
    if not args:
        print(
            f"error: finseq needs a command: {' or '.join(COMMANDS)} (see finseq --help)",
            file=sys.stderr,
        )
        sys.exit(2)
    command, rest = args[0], args[1:]
    if command in COMMANDS:
        # Importing a command takes seconds (torch): Ctrl-C then is one line too.
        run_stage(lambda: _run(command, rest), interrupted="nothing was written")
    else:
        print(
            f"error: unknown command {command!r}; commands are: {', '.join(COMMANDS)} "
            "(see finseq --help)",
            file=sys.stderr,
        )
        sys.exit(2)
