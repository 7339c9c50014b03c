"""User-facing errors: each names the file or setting at fault and says how to fix it.

The CLI prints these as one readable message (no traceback) and exits with status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HeadstartError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""


class UnknownNameError(HeadstartError, KeyError):
    """A name (backbone, strategy, policy, built-in set) that no registry holds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(HeadstartError, ValueError):
    """A setting out of its range, with the range in the message."""


class DataError(HeadstartError):
    """The data (folder, CSV, built-in set) cannot be used as given."""


class BadImageError(DataError):
    """One image file cannot be decoded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class WeightsError(HeadstartError):
    """A weights file is missing, unreadable or does not fit the architecture."""


class RunError(HeadstartError):
    """A run folder is missing files or was written by an incompatible version."""


class TrainingDiverged(HeadstartError, FloatingPointError):
    """The loss became NaN or infinite; the message says what to change."""
