"""Reading and writing PCM audio as numpy arrays (PyAV for decoding and resampling)."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
from av.audio.resampler import AudioResampler

from podforge.io import atomic_path


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Decode any audio file to mono float32 at ``sample_rate`` (libswresample through PyAV)."""
    return _decode(path, sample_rate, "mono").reshape(-1)


def read_stereo(path: Path, sample_rate: int) -> np.ndarray:
    """Decode any audio file to stereo float32 frames ``(n, 2)`` at ``sample_rate`` (mono: both channels, -3 dB each)."""
    return _decode(path, sample_rate, "stereo").reshape(-1, 2)


def _decode(path: Path, sample_rate: int, layout: str) -> np.ndarray:
    """Interleaved float32 samples (packed ``flt``) in ``layout`` at ``sample_rate``."""
    resampler = AudioResampler(format="flt", layout=layout, rate=sample_rate)
    pieces: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, dtype=np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples in [-1, 1] (shape ``(n,)`` or ``(n, channels)``) as 16-bit PCM, atomically."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    pcm = (np.clip(frames, -1.0, 1.0) * 32767).round().astype("<i2")
    with atomic_path(Path(path)) as tmp:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(frames.shape[1])
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(pcm.tobytes())
    return Path(path)
