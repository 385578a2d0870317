"""Mix and master: hosts levelled, the bed ducked along the speech timeline, loudness and true peak in one pass."""

from __future__ import annotations

from podforge.config import EpisodeTiming, MixLevels
from podforge.media.mixing import mix_and_master
from podforge.steps import StepOutput, current_step, step_task


@step_task("mix", version="4", key=("dialogue", "bed", "levels", "timing", "ffmpeg"))
def mix(dialogue: StepOutput, bed: StepOutput, levels: MixLevels, timing: EpisodeTiming, ffmpeg: str | None) -> StepOutput:
    step = current_step()
    track = dialogue.result
    master = mix_and_master(track.wav, track.timeline.lines, bed.result.wav, levels, timing, step.workdir, ffmpeg)
    return StepOutput(record=step.record("numpy", integrated_lufs=master.loudness.integrated_lufs, true_peak_dbtp=master.loudness.true_peak_dbtp), result=master)
