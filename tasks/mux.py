"""Final containers: MP4 (H.264 + AAC 48 kHz, +faststart) and MP3."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from podforge.config import Encoding
from podforge.media.mux import encode_mp3, mux_mp4
from podforge.steps import StepOutput, current_step, step_task


class Containers(BaseModel):
    mp4: Path
    mp3: Path


@step_task("mux", version="2", key=("video", "master", "encoding", "ffmpeg"))
def mux(video: StepOutput, master: StepOutput, encoding: Encoding, ffmpeg: str | None) -> StepOutput:
    step = current_step()
    containers = Containers(
        mp4=mux_mp4(video.result.video, master.result.wav, step.workdir / "episode.mp4", aac_bitrate=encoding.aac_bitrate, binary=ffmpeg),
        mp3=encode_mp3(master.result.wav, step.workdir / "episode.mp3", bitrate=encoding.mp3_bitrate, binary=ffmpeg),
    )
    return StepOutput(record=step.record("ffmpeg"), result=containers)
