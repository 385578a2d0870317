"""Errors a user can act on: each names the file and the field at fault."""

from __future__ import annotations

from pathlib import Path


class PodforgeError(Exception):
    """A problem with the user's input or setup, reported as one line (no traceback)."""

    def __init__(self, message: str, *, file: str | Path | None = None, field: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        return f"{where}: {self.message}" if where else self.message


class ScriptError(PodforgeError):
    """The episode script cannot be used."""


class ConfigError(PodforgeError):
    """A configuration file or value is wrong."""


class EngineError(PodforgeError):
    """An engine is unknown, not installed, or failed."""
