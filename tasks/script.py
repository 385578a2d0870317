"""Parse and validate the episode script, then plan the episode (the same checks as the CLI's pre-flight)."""

from __future__ import annotations

from pathlib import Path

from podforge.config import PodforgeConfig
from podforge.errors import ScriptError
from podforge.gpu import GpuInfo
from podforge.planning import EpisodePlan, plan_episode
from podforge.script import Script, load_script, parse_script
from podforge.steps import step_task


@step_task("parse", cached=False, retries=0)
def parse(script: str, script_text: str = "") -> Script:
    """The script from inline text (UI form) or from a file path."""
    if script_text:
        return parse_script(script_text, source="script_text")
    if not script:
        raise ScriptError("no script: give `script` (a path to a script file) or `script_text` (the script itself)", field="script")
    return load_script(Path(script))


@step_task("plan", cached=False, retries=0)
def make_plan(script: Script, config: PodforgeConfig, gpus: list[GpuInfo]) -> EpisodePlan:
    """Cast the voices and resolve every engine; fails here, before any speech is made, if the episode cannot run."""
    return plan_episode(config, script, gpus)
