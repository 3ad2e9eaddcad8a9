"""Errors that reach the user. Each message says what was wrong and how to fix it.

cli.py catches ProgbenchError, prints `str(err)` (message plus hint) and exits with `exit_code`.
Library code raises these and never prints or exits.
"""

from __future__ import annotations


class ProgbenchError(Exception):
    """Base class: a message (what was wrong) and an optional hint (how to fix it)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class ConfigError(ProgbenchError):
    """A YAML file, a CLI option combination or a registry entry is invalid."""


class ManifestError(ProgbenchError):
    """The manifest (CSV/Parquet) is missing columns, has bad rows or bad files.

    `problems` holds one line per bad row when the error lists rows, so that a caller (prepare)
    can merge them with its own.
    """

    def __init__(self, message: str, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint)
        self.problems: list[str] = list(problems or [])


class PrepareError(ProgbenchError):
    """A clinical table, image folder or column map cannot make a manifest (`progbench prepare`)."""


class ImageDecodeError(ProgbenchError):
    """An image file could not be read or decoded."""


class SplitError(ProgbenchError):
    """A split or a few-shot draw cannot be made as asked (too few patients, single class...)."""


class RegistryError(ConfigError):
    """A backbone or strategy name is unknown, or its YAML file is invalid."""


class NotApplicableError(ProgbenchError):
    """A (backbone, strategy) pair that cannot be built, with the reason."""


class WeightsError(ProgbenchError):
    """Weights could not be fetched or loaded (missing/unexpected keys, bad file)."""


class CacheError(ProgbenchError):
    """A Zarr store is incomplete, corrupt, locked or does not match its manifest."""


class RunError(ProgbenchError):
    """A run directory is incomplete or inconsistent."""
