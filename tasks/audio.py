"""The delivered audio, made from the master beside the picture: the WAV, the AAC for the MP4 and the MP3,
each measured and held to the loudness and true-peak targets (made again when an encode misses)."""

from __future__ import annotations

from podforge.config import Encoding, MixLevels
from podforge.media.mux import deliver_audio
from podforge.steps import StepOutput, current_step, step_task


@step_task("audio", version="2", key=("master", "levels.target_lufs", "levels.true_peak_db", "encoding", "ffmpeg"))
def audio(master: StepOutput, levels: MixLevels, encoding: Encoding, ffmpeg: str | None) -> StepOutput:
    step = current_step()
    delivered = deliver_audio(
        master.result.wav,
        master.result.loudness,
        step.workdir,
        target_lufs=levels.target_lufs,
        peak_limit_db=levels.true_peak_db,
        aac_bitrate=encoding.aac_bitrate,
        mp3_bitrate=encoding.mp3_bitrate,
        binary=ffmpeg,
    )
    files = {"episode.wav": delivered.wav, "episode.m4a": delivered.aac, "episode.mp3": delivered.mp3}
    made_again = {name: encoded.adjusted for name, encoded in files.items() if encoded.adjusted}
    peaks = {name: encoded.loudness.true_peak_dbtp for name, encoded in files.items()}
    return StepOutput(record=step.record("ffmpeg", true_peak_dbtp=peaks, **({"made_again": made_again} if made_again else {})), result=delivered)
