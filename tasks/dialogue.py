"""Join the spoken lines into one dialogue track with its timeline (who said what, when)."""

from __future__ import annotations

from podforge.config import MixSettings
from podforge.dialogue import assemble
from podforge.script import ScriptLine
from podforge.steps import StepContext, StepOutput, step_task


@step_task("dialogue")
def assemble_dialogue(lines: list[ScriptLine], clips: list[StepOutput], mix: MixSettings) -> StepOutput:
    step = StepContext("dialogue", "numpy", {"lines": lines, "clips": clips, "mix": mix})
    track = assemble(lines, [clip.result for clip in clips], mix, step.workdir)
    return StepOutput(record=step.record(lines=len(lines), seconds_of_speech=round(track.timeline.duration_s, 2)), result=track)
