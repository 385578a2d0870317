"""Beds longer than a MusicGen window, shared by the ``musicgen`` (transformers) and ``audiocraft`` runners.

Needs numpy (both environments have it). A generator is anything with ``sample_rate``, ``frame_rate``,
``hop`` (samples per codec frame) and ``generate(frames, prompt_audio=None) -> np.ndarray``: ``frames`` new
codec frames of mono float audio, after ``prompt_audio`` when given (returned re-decoded in front of them).

A bed longer than one window is continued: the last ``overlap_s`` of what exists is given back to the model
as its prompt, the next window continues it, and the re-decoded prompt is crossfaded over the original.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np
from podforge_runner import write_wav_atomic


class WindowGenerator(Protocol):
    sample_rate: int
    frame_rate: int
    hop: int

    def generate(self, frames: int, prompt_audio: np.ndarray | None = None) -> np.ndarray: ...


def crossfade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Equal-power crossfade from ``tail`` into ``head`` (same length)."""
    ramp = np.linspace(0.0, math.pi / 2, len(tail), dtype=np.float32)
    return tail * np.cos(ramp) + head * np.sin(ramp)


def generate_long(generator: WindowGenerator, total_samples: int, window_s: float, overlap_s: float) -> tuple[np.ndarray, int]:
    """At least ``total_samples`` of audio, one window at a time, each continuing the last; and the count."""
    window_frames = max(1, int(window_s * generator.frame_rate))
    overlap_frames = min(int(overlap_s * generator.frame_rate), window_frames - 1)
    needed_frames = math.ceil(total_samples / generator.hop)
    audio = generator.generate(min(window_frames, needed_frames))
    segments = 1
    while len(audio) < total_samples:
        overlap = overlap_frames * generator.hop
        new_frames = min(window_frames - overlap_frames, math.ceil((total_samples - len(audio)) / generator.hop))
        continued = generator.generate(new_frames, prompt_audio=audio[len(audio) - overlap :] if overlap else None)
        if overlap:
            joined = crossfade(audio[len(audio) - overlap :], continued[:overlap])
            audio = np.concatenate([audio[: len(audio) - overlap], joined, continued[overlap:]])
        else:
            audio = np.concatenate([audio, continued])
        segments += 1
        print(f"music: window {segments}: {len(audio) / generator.sample_rate:.2f} s so far", flush=True)
    return audio, segments


def write_bed_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit mono WAV, peaks kept below -1 dBFS (louder audio is scaled down, quiet audio never amplified)."""
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    scaled = audio / peak * 0.89 if peak > 0.89 else audio
    write_wav_atomic(path, (np.clip(scaled, -1.0, 1.0) * 32767).astype("<i2").tobytes(), sample_rate)
