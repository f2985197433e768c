"""The two kinds of mistake a user can make: bad parameters and bad data.

Stage entry points print these as one line and exit with status 2; any other
exception is a bug in this package and keeps its traceback.
"""

import sys


def note(message: str) -> None:
    """A remark the user should see, which does not stop the stage."""
    print(f"note: {message}", file=sys.stderr)


class UserError(Exception):
    """A problem the user can fix by editing params.yaml or the input data."""


class ConfigError(UserError):
    """A parameter is unknown, of the wrong type, or out of range."""


class DataError(UserError):
    """An input file is missing, unreadable, or holds values the pipeline cannot use."""
