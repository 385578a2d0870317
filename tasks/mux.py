"""Final containers: MP4 (H.264 + AAC 48 kHz, +faststart) and MP3."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from podforge.config import PublishSettings
from podforge.media.mux import encode_mp3, mux_mp4
from podforge.steps import StepContext, StepOutput, step_task


class Containers(BaseModel):
    mp4: Path
    mp3: Path


@step_task("mux")
def mux(video: StepOutput, master: StepOutput, publish: PublishSettings, ffmpeg_binary: str | None) -> StepOutput:
    step = StepContext("mux", "ffmpeg", {"video": video, "master": master, "publish": publish})
    containers = Containers(
        mp4=mux_mp4(video.result.video, master.result.wav, step.workdir / "episode.mp4", aac_bitrate=publish.aac_bitrate, binary=ffmpeg_binary),
        mp3=encode_mp3(master.result.wav, step.workdir / "episode.mp3", bitrate=publish.mp3_bitrate, binary=ffmpeg_binary),
    )
    return StepOutput(record=step.record(), result=containers)
