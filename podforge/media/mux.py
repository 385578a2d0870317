"""Final containers: the MP4 (H.264 video + AAC audio, faststart) and the MP3, held to the loudness targets.

Lossy encoders change the sound they are given: AAC and MP3 overshoot the master's true peak, and LAME at
podcast bitrates loses about half a LU of loudness. Both encodes run side by side, then each delivered
file is decoded and measured (ebur128, the reference meter). A file that misses a target is encoded
again from its own master: the mix's master, brought up or down by what that encode lost or gained and
limited as far under its ceiling as the encode overshot (plus :data:`RELIMIT_MARGIN_DB`), then measured
again. Every delivered file meets the targets as a listener gets it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ffmpeg
from pydantic import BaseModel, Field

from podforge.io import atomic_path
from podforge.media.ffmpeg import Loudness, measure_loudness, run_graph
from podforge.media.mixing import CODEC_HEADROOM_DB, relimit
from podforge.media.quality import QualityCheck, delivery_checks

RELIMIT_MARGIN_DB = 0.3
LOUDNESS_AIM_LU = 0.2
"""An encode further than this from the target is made again (the targets allow 0.5)."""
MAX_ATTEMPTS = 3


class Delivery(BaseModel):
    """The delivered audio and picture, and how each file measured."""

    wav: Path
    mp4: Path
    mp3: Path
    adjusted: dict[str, str] = Field(default_factory=dict, description="files encoded again from their own master, and why")
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
    """The MP4 and MP3 in ``workdir`` and the WAV (the mix's master), each measured and, where it missed,
    made again from a master of its own."""
    mp4, mp3 = workdir / "episode.mp4", workdir / "episode.mp3"
    makers: dict[str, Callable[[Path], Path]] = {
        "episode.wav": lambda source: source,
        mp4.name: lambda source: mux_mp4(video, source, mp4, aac_bitrate=aac_bitrate, binary=binary),
        mp3.name: lambda source: encode_mp3(source, mp3, bitrate=mp3_bitrate, binary=binary),
    }
    files = {"episode.wav": master}
    measured = {"episode.wav": master_loudness}
    aims = dict.fromkeys(makers, target_lufs)  # each file's master, as numpy measures it: the mix put its master on target
    headroom = dict.fromkeys(makers, 0.0)
    sources, adjusted, pending = dict.fromkeys(makers, master), {}, [mp4.name, mp3.name]
    for attempt in range(MAX_ATTEMPTS):
        with ThreadPoolExecutor(max_workers=2) as pool:
            files.update(zip(pending, pool.map(lambda name: makers[name](sources[name]), pending)))
            measured.update(zip(pending, pool.map(lambda name: measure_loudness(files[name], binary=binary), pending)))
        missed = [name for name in makers if not _on_target(measured[name], target_lufs, peak_limit_db)]
        if not missed or attempt == MAX_ATTEMPTS - 1:
            break
        for name in missed:
            loudness = measured[name]
            aims[name] -= loudness.integrated_lufs - target_lufs
            headroom[name] += max(0.0, loudness.true_peak_dbtp - peak_limit_db + RELIMIT_MARGIN_DB) if loudness.true_peak_dbtp > peak_limit_db else 0.0
            sources[name] = workdir / f"master-for-{Path(name).suffix[1:]}.wav"
            relimit(master, sources[name], target_lufs=aims[name], ceiling_db=peak_limit_db - CODEC_HEADROOM_DB - headroom[name], binary=binary)
            adjusted[name] = f"{loudness.integrated_lufs:.1f} LUFS, {loudness.true_peak_dbtp:.1f} dBTP; made again from a master {aims[name] - target_lufs:+.1f} LU, limited {headroom[name]:.1f} dB lower"
        pending = missed
    quality = [check for name, loudness in measured.items() for check in delivery_checks(name, loudness, target_lufs=target_lufs, peak_limit_db=peak_limit_db)]
    return Delivery(wav=files["episode.wav"], mp4=files[mp4.name], mp3=files[mp3.name], adjusted=adjusted, loudness=measured, quality=quality)


def _on_target(loudness: Loudness, target_lufs: float, peak_limit_db: float) -> bool:
    return abs(loudness.integrated_lufs - target_lufs) <= LOUDNESS_AIM_LU and loudness.true_peak_dbtp <= peak_limit_db
