"""Final containers: MP4 (H.264 + AAC 48 kHz, +faststart) and MP3, every delivered file measured and held to
the loudness and true-peak targets (re-limited when an encode overshoots)."""

from __future__ import annotations

from podforge.config import Encoding, MixLevels
from podforge.media.mux import deliver
from podforge.steps import StepOutput, current_step, step_task


@step_task("mux", version="3", key=("video", "master", "levels.target_lufs", "levels.true_peak_db", "encoding", "ffmpeg"))
def mux(video: StepOutput, master: StepOutput, levels: MixLevels, encoding: Encoding, ffmpeg: str | None) -> StepOutput:
    step = current_step()
    delivery = deliver(
        video.result.video,
        master.result.wav,
        master.result.loudness,
        step.workdir,
        target_lufs=levels.target_lufs,
        peak_limit_db=levels.true_peak_db,
        aac_bitrate=encoding.aac_bitrate,
        mp3_bitrate=encoding.mp3_bitrate,
        binary=ffmpeg,
    )
    peaks = {name: loudness.true_peak_dbtp for name, loudness in delivery.loudness.items()}
    return StepOutput(record=step.record("ffmpeg", true_peak_dbtp=peaks, **({"made_again": delivery.adjusted} if delivery.adjusted else {})), result=delivery)
