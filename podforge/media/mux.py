"""Final containers: the MP4 (H.264 video + AAC audio, faststart) and the MP3, held to the loudness targets.

Lossy encoders overshoot: the decoded AAC or MP3 can peak higher than the master they were made from. Both
encodes run side by side, then every delivered file is decoded and measured (ebur128, the reference
meter). If one misses the targets, the master is limited again, this time as far under its ceiling as
the encode overshot (plus :data:`RELIMIT_MARGIN_DB`), and everything is encoded and measured again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ffmpeg
from pydantic import BaseModel, Field

from podforge.io import atomic_path
from podforge.media.ffmpeg import Loudness, run_graph
from podforge.media.mixing import CODEC_HEADROOM_DB, relimit
from podforge.media.quality import LOUDNESS_TOLERANCE_LU, QualityCheck, delivery_checks, measure_files

RELIMIT_MARGIN_DB = 0.3
MAX_RELIMITS = 2


class Delivery(BaseModel):
    """The delivered audio and picture: the master the encodes were made from and the two containers."""

    wav: Path
    mp4: Path
    mp3: Path
    relimited_db: float = Field(default=0.0, description="how far under its ceiling the master was limited again for the encodes")
    loudness: dict[str, Loudness] = Field(description="ebur128 of each delivered file, by file name")
    quality: list[QualityCheck] = Field(default_factory=list)


def mux_mp4(video: Path, audio: Path, out: Path, *, aac_bitrate: str, sample_rate: int = 48000, binary: str | None = None) -> Path:
    """Copy the H.264 stream, encode the master to AAC, and move the index to the front (+faststart)."""
    with atomic_path(out) as tmp:
        picture = ffmpeg.input(str(video)).video
        sound = ffmpeg.input(str(audio)).audio
        stream = ffmpeg.output(picture, sound, str(tmp), vcodec="copy", acodec="aac", audio_bitrate=aac_bitrate, ar=sample_rate, movflags="+faststart", f="mp4")
        run_graph(stream, what="muxing the episode MP4", binary=binary)
    return out


def encode_mp3(audio: Path, out: Path, *, bitrate: str, binary: str | None = None) -> Path:
    with atomic_path(out) as tmp:
        stream = ffmpeg.output(ffmpeg.input(str(audio)).audio, str(tmp), acodec="libmp3lame", audio_bitrate=bitrate, ar=44100, f="mp3", write_xing=1)
        run_graph(stream, what="encoding the episode MP3", binary=binary)
    return out


def deliver(
    video: Path,
    master: Path,
    master_loudness: Loudness,
    workdir: Path,
    *,
    target_lufs: float,
    peak_limit_db: float,
    aac_bitrate: str,
    mp3_bitrate: str,
    binary: str | None = None,
) -> Delivery:
    """Encode the MP4 and MP3 from ``master`` in ``workdir``, measure all three files, re-limit if needed."""
    wav, wav_loudness, relimited = master, master_loudness, 0.0
    mp4, mp3 = workdir / "episode.mp4", workdir / "episode.mp3"
    for attempt in range(MAX_RELIMITS + 1):
        with ThreadPoolExecutor(max_workers=2) as encoders:
            jobs = [encoders.submit(mux_mp4, video, wav, mp4, aac_bitrate=aac_bitrate, binary=binary), encoders.submit(encode_mp3, wav, mp3, bitrate=mp3_bitrate, binary=binary)]
            for job in jobs:
                job.result()
        loudness = {"episode.wav": wav_loudness, **dict(zip(("episode.mp4", "episode.mp3"), measure_files([mp4, mp3], binary=binary)))}
        overshoot = max(measured.true_peak_dbtp for measured in loudness.values()) - peak_limit_db
        off_target = max(abs(measured.integrated_lufs - target_lufs) for measured in loudness.values())
        if (overshoot <= 0 and off_target <= LOUDNESS_TOLERANCE_LU) or attempt == MAX_RELIMITS:
            break
        relimited += max(0.0, overshoot) + RELIMIT_MARGIN_DB
        wav = workdir / "master.wav"
        aim = 2 * target_lufs - wav_loudness.integrated_lufs  # aim off by what ebur128 and numpy disagree on
        wav_loudness = relimit(master, wav, target_lufs=aim, ceiling_db=peak_limit_db - CODEC_HEADROOM_DB - relimited, binary=binary)
    quality = [check for name, measured in loudness.items() for check in delivery_checks(name, measured, target_lufs=target_lufs, peak_limit_db=peak_limit_db)]
    return Delivery(wav=wav, mp4=mp4, mp3=mp3, relimited_db=round(relimited, 2), loudness=loudness, quality=quality)
