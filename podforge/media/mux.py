"""The delivered files: the WAV master, the MP4 (H.264 + AAC 48 kHz, faststart) and the MP3, held to the
loudness targets.

Lossy encoders change the sound they are given: AAC and MP3 overshoot the master's true peak, and LAME at
podcast bitrates loses about half a LU of loudness (made up for in its first encode:
:data:`MP3_LOSS_LU`). So the audio is encoded first, beside the picture
(:func:`deliver_audio`: the AAC and the MP3 side by side), and each file is decoded and measured (ebur128,
the reference meter). A file that misses a target is encoded again from the mix's master, shifted by what
that encode lost or gained (:func:`hold_to_target`): where the file's true peak leaves room for the shift,
the encode applies it as a gain; otherwise the master is mastered again at the shifted loudness, limited as
far under its ceiling as the encode overshot (plus :data:`RELIMIT_MARGIN_DB`). Then :func:`deliver` copies
the picture and the measured AAC into the MP4 (no encode: the MP4's audio is the AAC that was measured).
Every delivered file meets the targets as a listener gets it.
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
MP3_LOSS_LU = 0.4
"""What LAME at podcast bitrates (128-192 kbps) takes off a spoken master's loudness (measured: 0.4-0.5 LU,
not its lowpass: its coding). The first MP3 encode makes it up with a gain when the peaks leave room;
the measurement still decides."""
AAC_SAMPLE_RATE = 48000
AAC_CODER = "fast"
"""ffmpeg's own AAC encoder searches its quantisers with ``twoloop`` unless told otherwise. At podcast
bitrates (128 kbps and up) its maintainer found the ``fast`` coder sounds at least as good for much less
CPU (measured here: 1.6 instead of 5.2 CPU-seconds for a 2.7-minute stereo master at 160 kbps, the same
30 dB signal-to-noise against the master); the AAC encodes beside the picture, on the same cores."""
MP3_SAMPLE_RATE = 44100

Maker = Callable[[Path, float], Path]
"""Makes one delivered file from a master, applying a gain in dB on the way."""


class Encoded(BaseModel):
    """One delivered file as it measured, and why it was made again (when it was)."""

    path: Path
    loudness: Loudness
    adjusted: str | None = None


class DeliveredAudio(BaseModel):
    """The episode's audio as delivered, each file measured: the WAV master, the AAC for the MP4, the MP3."""

    wav: Encoded
    aac: Encoded
    mp3: Encoded


class Delivery(BaseModel):
    """The delivered audio and picture, and how each file measured."""

    wav: Path
    mp4: Path
    mp3: Path
    adjusted: dict[str, str] = Field(default_factory=dict, description="files encoded again from their own master, and why")
    loudness: dict[str, Loudness] = Field(description="ebur128 of each delivered file, by file name")
    quality: list[QualityCheck] = Field(default_factory=list)


def gain_filter(gain_db: float) -> dict[str, str]:
    return {"af": f"volume={gain_db:.2f}dB"} if gain_db else {}


def encode_aac(audio: Path, out: Path, *, bitrate: str, gain_db: float = 0.0, binary: str | None = None) -> Path:
    """The MP4's audio track, on its own (an M4A): AAC at ``bitrate``, 48 kHz."""
    return _encode(audio, out, "the episode AAC", binary, acodec="aac", aac_coder=AAC_CODER, audio_bitrate=bitrate, ar=AAC_SAMPLE_RATE, f="mp4", **gain_filter(gain_db))


def encode_mp3(audio: Path, out: Path, *, bitrate: str, gain_db: float = 0.0, binary: str | None = None) -> Path:
    return _encode(audio, out, "the episode MP3", binary, acodec="libmp3lame", audio_bitrate=bitrate, ar=MP3_SAMPLE_RATE, f="mp3", write_xing=1, **gain_filter(gain_db))


def encode_wav(audio: Path, out: Path, *, gain_db: float, binary: str | None = None) -> Path:
    return _encode(audio, out, "the episode WAV", binary, acodec="pcm_s16le", f="wav", **gain_filter(gain_db))


def _encode(audio: Path, out: Path, what: str, binary: str | None, **options: object) -> Path:
    """``audio`` through one ffmpeg encode into ``out``, atomically."""
    with atomic_path(out) as tmp:
        run_graph(ffmpeg.output(ffmpeg.input(str(audio)).audio, str(tmp), **options), what=f"encoding {what}", binary=binary)
    return out


def mux_mp4(video: Path, aac: Path, out: Path, *, binary: str | None = None) -> Path:
    """Copy the H.264 stream of ``video`` and the AAC stream of ``aac`` into one MP4, the index at the front (+faststart)."""
    with atomic_path(out) as tmp:
        stream = ffmpeg.output(ffmpeg.input(str(video)).video, ffmpeg.input(str(aac)).audio, str(tmp), c="copy", movflags="+faststart", f="mp4")
        run_graph(stream, what="muxing the episode MP4", binary=binary)
    return out


def hold_to_target(
    name: str,
    make: Maker,
    master: Path,
    workdir: Path,
    *,
    target_lufs: float,
    peak_limit_db: float,
    made: Encoded | None = None,
    first_gain_db: float = 0.0,
    binary: str | None = None,
) -> Encoded:
    """``made`` (else ``make(master, first_gain_db)``), measured and made again while it misses the targets.

    Each attempt shifts the master by what the last one lost or gained: as a gain in the encode when the
    file's true peak leaves room for it, else by mastering it again at the shifted loudness, limited
    ``RELIMIT_MARGIN_DB`` further under the ceiling than the encode overshot."""
    encoded = made or _measured(make(master, first_gain_db), binary)
    source, gain_db, shift_lu, headroom_db = master, first_gain_db, first_gain_db, 0.0
    for _ in range(MAX_ATTEMPTS - 1):
        loudness = encoded.loudness
        if _on_target(loudness, target_lufs, peak_limit_db):
            break
        miss_lu = target_lufs - loudness.integrated_lufs
        shift_lu += miss_lu
        if loudness.true_peak_dbtp + max(miss_lu, 0.0) <= peak_limit_db - RELIMIT_MARGIN_DB:
            gain_db += miss_lu
            how = f"a gain of {gain_db:+.1f} dB in the encode"
        else:
            if loudness.true_peak_dbtp > peak_limit_db:  # the encode overshot: limit further under the ceiling
                headroom_db += loudness.true_peak_dbtp - peak_limit_db + RELIMIT_MARGIN_DB
            source, gain_db = workdir / f"master-for-{Path(name).suffix[1:]}.wav", 0.0
            relimit(master, source, target_lufs=target_lufs + shift_lu, ceiling_db=peak_limit_db - CODEC_HEADROOM_DB - headroom_db, binary=binary)
            how = f"a master {shift_lu:+.1f} LU, limited {headroom_db:.1f} dB lower"
        reason = f"{loudness.integrated_lufs:.1f} LUFS, {loudness.true_peak_dbtp:.1f} dBTP; made again from {how}"
        encoded = _measured(make(source, gain_db), binary).model_copy(update={"adjusted": reason})
    return encoded


def deliver_audio(
    master: Path, master_loudness: Loudness, workdir: Path, *, target_lufs: float, peak_limit_db: float, aac_bitrate: str, mp3_bitrate: str, binary: str | None = None
) -> DeliveredAudio:
    """The WAV (the mix's master), the AAC and the MP3 in ``workdir``, each measured and held to the targets;
    the two encodes run side by side."""
    limits = {"target_lufs": target_lufs, "peak_limit_db": peak_limit_db, "binary": binary}
    wav, aac, mp3 = workdir / "episode.wav", workdir / "episode.m4a", workdir / "episode.mp3"
    room_for_mp3_loss = master_loudness.true_peak_dbtp + MP3_LOSS_LU <= peak_limit_db - RELIMIT_MARGIN_DB
    jobs: dict[str, Callable[[], Encoded]] = {
        "wav": lambda: hold_to_target(wav.name, lambda source, gain: encode_wav(source, wav, gain_db=gain, binary=binary) if gain else source, master, workdir, made=Encoded(path=master, loudness=master_loudness), **limits),
        "aac": lambda: hold_to_target(aac.name, lambda source, gain: encode_aac(source, aac, bitrate=aac_bitrate, gain_db=gain, binary=binary), master, workdir, **limits),
        "mp3": lambda: hold_to_target(
            mp3.name,
            lambda source, gain: encode_mp3(source, mp3, bitrate=mp3_bitrate, gain_db=gain, binary=binary),
            master,
            workdir,
            first_gain_db=MP3_LOSS_LU if room_for_mp3_loss else 0.0,
            **limits,
        ),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        return DeliveredAudio(**dict(zip(jobs, pool.map(lambda job: job(), jobs.values()))))


def deliver(video: Path, audio: DeliveredAudio, workdir: Path, *, target_lufs: float, peak_limit_db: float, binary: str | None = None) -> Delivery:
    """The MP4 in ``workdir`` (the picture and the delivered AAC, copied), beside the delivered WAV and MP3,
    with each file's measurement and quality checks (the MP4's audio is the AAC as measured)."""
    mp4 = mux_mp4(video, audio.aac.path, workdir / "episode.mp4", binary=binary)
    files = {"episode.wav": audio.wav, "episode.mp4": audio.aac, "episode.mp3": audio.mp3}
    quality = [check for name, encoded in files.items() for check in delivery_checks(name, encoded.loudness, target_lufs=target_lufs, peak_limit_db=peak_limit_db)]
    return Delivery(
        wav=audio.wav.path,
        mp4=mp4,
        mp3=audio.mp3.path,
        adjusted={name: encoded.adjusted for name, encoded in files.items() if encoded.adjusted},
        loudness={name: encoded.loudness for name, encoded in files.items()},
        quality=quality,
    )


def _measured(path: Path, binary: str | None) -> Encoded:
    return Encoded(path=path, loudness=measure_loudness(path, binary=binary))


def _on_target(loudness: Loudness, target_lufs: float, peak_limit_db: float) -> bool:
    return abs(loudness.integrated_lufs - target_lufs) <= LOUDNESS_AIM_LU and loudness.true_peak_dbtp <= peak_limit_db
