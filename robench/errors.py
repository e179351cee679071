"""User-facing errors.

Anything a user can fix (a config key, a data path, a corrupt file) raises :class:`RobenchError`
with one line that names the problem and the fix. The CLI prints that line and exits non-zero;
tracebacks are reserved for bugs (or ``--debug``).
"""

from __future__ import annotations


class RobenchError(Exception):
    """An error caused by the user's input, with a one-line message that says how to fix it."""


class ConfigError(RobenchError):
    """A config key, type or value is not allowed."""


class DataError(RobenchError):
    """A data set is missing, malformed or inconsistent."""


class CheckpointError(RobenchError):
    """A checkpoint is missing, corrupt, untrusted or does not fit the model."""


class Interrupted(RobenchError):
    """Training was stopped by SIGINT/SIGTERM after saving a checkpoint."""


class RankError(RobenchError):
    """Under torchrun, rank 0 failed with a user error; the other ranks stop with it (the CLI
    prints it once, from rank 0)."""


def one_line(err: RobenchError) -> str:
    """The line a user sees for ``err``. An error raised in a DataLoader worker (a file decoded
    there, a plugin's per-sample path) reaches this process re-raised by torch with the whole
    worker traceback as its message ("Caught DataError in DataLoader worker process 0 ...
    robench.errors.DataError: <message>"); its own message is that last line."""
    text = str(err).strip()
    if "\n" not in text:
        return text
    last = text.rsplit("\n", 1)[1]
    own = f"{type(err).__module__}.{type(err).__qualname__}: "
    return last[len(own) :] if last.startswith(own) else " ".join(text.split())


def first_line(err: BaseException) -> str:
    """The first line of a third-party exception's text (its type name if it has none), for
    our own one-line messages that quote it."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
