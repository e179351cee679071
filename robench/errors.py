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
