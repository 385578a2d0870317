"""Mix and master: bed ducked under speech, two-pass loudness normalisation."""

from __future__ import annotations

from podforge.config import MixSettings
from podforge.media.mixing import mix_and_master
from podforge.steps import StepContext, StepOutput, step_task


@step_task("mix-master", version="2")  # 2: stems loudness-matched and high-passed, final trim
def mix_master(dialogue: StepOutput, bed: StepOutput, mix: MixSettings, ffmpeg_binary: str | None) -> StepOutput:
    step = StepContext("mix", "ffmpeg", {"dialogue": dialogue, "bed": bed, "mix": mix})
    track = dialogue.result
    master = mix_and_master(track.wav, track.timeline.duration_s, bed.result.wav, mix, step.workdir, ffmpeg_binary)
    return StepOutput(record=step.record(integrated_lufs=master.loudness.integrated_lufs, true_peak_dbtp=master.loudness.true_peak_dbtp), result=master)
