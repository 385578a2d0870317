"""Errors a user can act on: each names the file and the field at fault, in one line."""

from __future__ import annotations

from pathlib import Path

MAX_DETAIL_CHARS = 240


class PodforgeError(Exception):
    """A problem with the user's input or setup, reported as one line (no traceback).

    ``message`` may carry details on further lines (an ffmpeg log tail, a runner's last lines): they stay in
    the exception for the logs, and :meth:`one_line` shows only the first line and the last detail.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, field: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        text = squash(self.message)
        return f"{where}: {text}" if where else text


def squash(message: str) -> str:
    """A multi-line message as one line: its first line, and the last non-empty line after it when there is one."""
    lines = [" ".join(line.split()) for line in message.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    head = lines[0]
    if len(lines) > 1:
        head = f"{head} … {lines[-1][:MAX_DETAIL_CHARS]}"
    return head


class ScriptError(PodforgeError):
    """The episode script cannot be used."""


class ConfigError(PodforgeError):
    """A configuration file or value is wrong."""


class EngineError(PodforgeError):
    """An engine is unknown, not installed, or failed."""


class OutputError(PodforgeError):
    """The output folder cannot take the episode (not a folder, read-only, full, or holding another episode)."""
