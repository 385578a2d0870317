"""Parse and validate the episode script."""

from __future__ import annotations

from pathlib import Path

from podforge.script import Script, load_script, parse_script
from podforge.steps import step_task


@step_task("parse-script", cached=False, retries=0)
def read_script(script: str, script_text: str = "") -> Script:
    """The script from inline text (UI form) or from a file path."""
    if script_text:
        return parse_script(script_text, source="script_text")
    return load_script(Path(script))
