"""Ingest and prepare: audio files found recursively become 32 kHz mono clips of 5-30 s, cut at quiet points.

A file longer than ``max_clip_s`` is cut greedily: each cut goes to the quietest 50 ms frame of the last
``cut_search_s`` seconds before the clip would reach ``max_clip_s`` (never leaving a tail shorter than
``min_clip_s`` when that can be avoided). Clips that are silent, clipped (too many samples at full scale
in the source file) or too short are dropped, each with its reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
from pydantic import BaseModel

from podforge.io import sha256_file
from podforge.media.audio import read_mono, write_wav
from podforge.training.settings import PrepareSettings

AUDIO_SUFFIXES = (".mp3", ".wav", ".flac")
FRAME_S = 0.05
FULL_SCALE = 0.999


class SourceFile(BaseModel):
    path: Path
    relative: str
    sha256: str


class Clip(BaseModel):
    """A prepared clip: a 32 kHz mono WAV cut from ``source`` at ``start_s``."""

    id: str
    wav: Path
    sha256: str
    source: str
    source_sha256: str
    start_s: float
    duration_s: float
    rms_dbfs: float


class Dropped(BaseModel):
    source: str
    start_s: float
    duration_s: float
    reason: str


class PreparedSource(BaseModel):
    relative: str
    sha256: str
    duration_s: float
    clips: int
    dropped: int


class Prepared(BaseModel):
    clips: list[Clip]
    dropped: list[Dropped]
    sources: list[PreparedSource]


def find_audio(dataset_dir: Path) -> list[SourceFile]:
    """Every mp3, wav and flac file under ``dataset_dir``, in path order, with its content hash."""
    root = Path(dataset_dir)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))
    return [SourceFile(path=p.resolve(), relative=p.relative_to(root).as_posix(), sha256=sha256_file(p)) for p in paths]


def cut_points(audio: np.ndarray, rate: int, settings: PrepareSettings) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering ``audio``, each at most ``max_clip_s``, cut at quiet frames."""
    total = len(audio)
    frame = max(1, round(FRAME_S * rate))
    max_len, min_len = round(settings.max_clip_s * rate), round(settings.min_clip_s * rate)
    search = round(settings.cut_search_s * rate)
    ranges = []
    start = 0
    while total - start > max_len:
        latest = min(start + max_len, total - min_len) if total - start - max_len < min_len else start + max_len
        earliest = max(start + min_len, latest - search)
        if latest - earliest < frame:
            earliest = max(start + 1, latest - frame)
        ranges.append((start, cut := quietest_point(audio, earliest, latest, frame)))
        start = cut
    ranges.append((start, total))
    return ranges


def quietest_point(audio: np.ndarray, earliest: int, latest: int, frame: int) -> int:
    """The middle of the quietest ``frame``-long window between ``earliest`` and ``latest``."""
    window = audio[earliest:latest].astype(np.float64)
    if len(window) <= frame:
        return latest
    running = np.concatenate([[0.0], np.cumsum(window * window)])
    energy = running[frame:] - running[:-frame]  # energy of the window starting at each sample
    return earliest + int(np.argmin(energy)) + frame // 2


def full_scale_mask(source: Path) -> tuple[np.ndarray, int]:
    """Per sample of the file as stored (its own rate, any channel): at or beyond full scale? And the rate.

    Read before resampling, because resampling smears a clipped flat top into ringing below full scale.
    """
    pieces: list[np.ndarray] = []
    rate = 0
    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            rate = frame.sample_rate
            data = frame.to_ndarray()
            if data.dtype.kind == "i":
                data = data.astype(np.float64) / np.iinfo(data.dtype).max
            elif data.dtype.kind == "u":
                half = 2 ** (8 * data.dtype.itemsize - 1)
                data = (data.astype(np.float64) - half) / (half - 1)
            data = data.reshape(-1, frame.samples) if frame.format.is_planar else data.reshape(frame.samples, -1).T
            pieces.append(np.abs(data).max(axis=0) >= FULL_SCALE)
    return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=bool)), rate


def prepare_file(source: SourceFile, out_dir: Path, settings: PrepareSettings) -> tuple[list[Clip], list[Dropped], float]:
    """Clips and drops of one file, and its duration; the clips are written under ``out_dir``."""
    rate = settings.sample_rate
    audio = read_mono(source.path, rate)
    duration = len(audio) / rate
    clips: list[Clip] = []
    dropped: list[Dropped] = []
    full_scale, native_rate = full_scale_mask(source.path)
    stem = Path(source.relative).with_suffix("").as_posix().replace("/", "__")
    for index, (start, end) in enumerate(cut_points(audio, rate, settings)):
        piece = audio[start:end]
        start_s, length_s = start / rate, (end - start) / rate
        rms = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) if len(piece) else 0.0
        rms_dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
        reason = None
        if length_s < settings.min_clip_s:
            reason = f"too short ({length_s:.1f} s < {settings.min_clip_s:g} s)"
        elif rms_dbfs < settings.silence_dbfs:
            reason = f"silent (RMS {rms_dbfs:.1f} dBFS < {settings.silence_dbfs:g} dBFS)"
        else:
            at_full_scale = full_scale[round(start_s * native_rate) : round((start_s + length_s) * native_rate)]
            clipped = float(at_full_scale.mean()) if len(at_full_scale) else 0.0
            if clipped > settings.clipped_fraction:
                reason = f"clipped ({clipped:.1%} of samples at full scale > {settings.clipped_fraction:.1%})"
        if reason:
            dropped.append(Dropped(source=source.relative, start_s=round(start_s, 3), duration_s=round(length_s, 3), reason=reason))
            continue
        clip_id = f"{stem}-{index:03d}"
        wav = write_wav(out_dir / f"{clip_id}.wav", piece, rate)
        clips.append(
            Clip(
                id=clip_id,
                wav=wav,
                sha256=sha256_file(wav),
                source=source.relative,
                source_sha256=source.sha256,
                start_s=round(start_s, 3),
                duration_s=round(length_s, 3),
                rms_dbfs=round(rms_dbfs, 2),
            )
        )
    return clips, dropped, duration


def prepare(sources: list[SourceFile], out_dir: Path, settings: PrepareSettings) -> Prepared:
    clips: list[Clip] = []
    dropped: list[Dropped] = []
    summary: list[PreparedSource] = []
    for source in sources:
        try:
            made, lost, duration = prepare_file(source, Path(out_dir), settings)
        except (av.error.FFmpegError, ValueError) as exc:
            lost, made, duration = [Dropped(source=source.relative, start_s=0.0, duration_s=0.0, reason=f"unreadable ({exc})")], [], 0.0
        clips += made
        dropped += lost
        summary.append(PreparedSource(relative=source.relative, sha256=source.sha256, duration_s=round(duration, 3), clips=len(made), dropped=len(lost)))
    return Prepared(clips=clips, dropped=dropped, sources=summary)
