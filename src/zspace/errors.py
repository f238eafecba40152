"""Exceptions zspace raises on bad input; each message names the field, value or path."""

from __future__ import annotations

__all__ = ["ZspaceError", "ConfigError", "DataError", "ModelFileError", "CacheDirError", "RunError", "TrainingDiverged",
           "DiskFullError"]


class ZspaceError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class ConfigError(ZspaceError, ValueError):
    """A config field has a bad value, type or name."""


class DataError(ZspaceError, ValueError):
    """A dataset is missing, malformed, empty or of the wrong shape."""


class ModelFileError(ZspaceError, ValueError):
    """A model file is refused (unsafe content, wrong format, not zspace)."""


class CacheDirError(ZspaceError, OSError):
    """A cache folder cannot be written; the message names it and how to choose another."""


class RunError(ZspaceError, RuntimeError):
    """A run directory cannot be used as asked (e.g. resuming with a changed config)."""


class TrainingDiverged(RunError):
    """The loss became non-finite; the message names the epoch and step."""


class DiskFullError(ZspaceError, OSError):
    """A write failed for want of disk space; the message names the file and says what was kept."""
