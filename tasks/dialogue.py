"""Join the spoken lines into one dialogue track with its timeline (which host said what, when)."""

from __future__ import annotations

from podforge.config import EpisodeTiming
from podforge.dialogue import LineSlot, assemble
from podforge.steps import StepOutput, current_step, step_task


@step_task("dialogue", version="2", key=("clips", "slots", "timing"))
def dialogue(clips: list[StepOutput], slots: list[LineSlot], timing: EpisodeTiming) -> StepOutput:
    step = current_step()
    track = assemble(slots, [clip.result for clip in clips], timing, step.workdir)
    return StepOutput(record=step.record("numpy", lines=len(slots), seconds_of_speech=round(track.timeline.duration_s, 2)), result=track)
