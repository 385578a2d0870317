"""The MP4: the picture's H.264 and the delivered AAC copied into one file (+faststart), beside the
delivered WAV and MP3, with every file's loudness checks."""

from __future__ import annotations

from podforge.config import MixLevels
from podforge.media.mux import deliver
from podforge.steps import StepOutput, current_step, step_task


@step_task("mux", version="4", key=("video", "audio", "levels.target_lufs", "levels.true_peak_db", "ffmpeg"))
def mux(video: StepOutput, audio: StepOutput, levels: MixLevels, ffmpeg: str | None) -> StepOutput:
    step = current_step()
    delivery = deliver(video.result.video, audio.result, step.workdir, target_lufs=levels.target_lufs, peak_limit_db=levels.true_peak_db, binary=ffmpeg)
    return StepOutput(record=step.record("ffmpeg"), result=delivery)
