"""Small DSP building blocks for the procedural music bed: a loop buffer, oscillators, envelopes, filters.

Everything is vectorised numpy. Filters and reverb work in the frequency domain over the whole loop, which
makes them circular: the loop's end feeds its start exactly as it does when the file plays on repeat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft

Response = Callable[[np.ndarray], np.ndarray]
"""A filter's gain at each frequency in Hz (zero phase)."""


class LoopBuffer:
    """A stereo buffer exactly one loop long; a sound that runs past the end carries on at the start."""

    def __init__(self, frames: int):
        self.audio = np.zeros((2, frames))

    def add(self, start: int, sound: np.ndarray) -> None:
        """Add ``sound`` (``(2, n)``, or ``(n,)`` for the centre) from frame ``start``, wrapping around."""
        frames = self.audio.shape[1]
        stereo = np.broadcast_to(sound, (2, sound.shape[-1]))
        position = start % frames
        while stereo.shape[1]:
            take = min(stereo.shape[1], frames - position)
            self.audio[:, position : position + take] += stereo[:, :take]
            stereo = stereo[:, take:]
            position = 0


def phase(freq_hz: float, frames: int, sample_rate: int, start: float = 0.0) -> np.ndarray:
    """Oscillator phase in cycles, wrapped to [0, 1)."""
    cycles = start + freq_hz / sample_rate * np.arange(frames)
    return cycles - np.floor(cycles)


def saw(cycle: np.ndarray, step: float) -> np.ndarray:
    """A band-limited sawtooth from a phase (PolyBLEP: each wrap is smoothed over one sample either side).

    ``step`` is the phase advance per sample (frequency / sample rate).
    """
    wave = 2.0 * cycle - 1.0
    after = cycle < step
    before = cycle > 1.0 - step
    x = cycle[after] / step
    wave[after] -= 2 * x - x * x - 1.0
    x = (cycle[before] - 1.0) / step
    wave[before] -= x * x + 2 * x + 1.0
    return wave


def triangle(cycle: np.ndarray) -> np.ndarray:
    """A triangle wave from a phase (its harmonics fall as 1/k², so the naive form barely aliases)."""
    return 1.0 - 4.0 * np.abs(((cycle + 0.25) % 1.0) - 0.5)


def fade(frames: int) -> np.ndarray:
    """A raised-cosine rise from 0 to 1 over ``frames`` samples."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(frames) / max(frames, 1))


def envelope(held: int, *, attack: int, release: int, decay_frames: float | None = None) -> np.ndarray:
    """A note's gain: raised-cosine attack, optional exponential decay, raised-cosine release after ``held``.

    The result is ``held + release`` samples long and ends at zero, so notes never click.
    """
    gain = np.ones(held + release)
    attack = min(attack, held)
    gain[:attack] = fade(attack)
    if decay_frames:
        gain *= np.exp(-np.arange(held + release) / decay_frames)
    gain[held:] *= fade(release)[::-1]
    return gain


def pan(sound: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan of a mono sound: ``position`` -1 is left, 0 centre, 1 right."""
    angle = (position + 1.0) * np.pi / 4
    return np.stack([np.cos(angle) * sound, np.sin(angle) * sound]) * np.sqrt(2.0)


def lowpass(cutoff_hz: float, order: int = 2) -> Response:
    return lambda freqs: 1.0 / np.sqrt(1.0 + (freqs / cutoff_hz) ** (2 * order))


def highpass(cutoff_hz: float, order: int = 2) -> Response:
    return lambda freqs: 1.0 / np.sqrt(1.0 + (cutoff_hz / np.maximum(freqs, 1e-9)) ** (2 * order))


def bandpass(low_hz: float, high_hz: float, order: int = 2) -> Response:
    return lambda freqs: highpass(low_hz, order)(freqs) * lowpass(high_hz, order)(freqs)


def apply_filter(audio: np.ndarray, response: Response, sample_rate: int) -> np.ndarray:
    """Filter a short sound along its last axis in the frequency domain (zero phase)."""
    frames = audio.shape[-1]
    spectrum = fft.rfft(audio, axis=-1)
    spectrum *= response(fft.rfftfreq(frames, 1.0 / sample_rate))
    return fft.irfft(spectrum, n=frames, axis=-1)


def filter_loop(audio: np.ndarray, response: Response, sample_rate: int, taps: int = 4096) -> np.ndarray:
    """Filter a loop circularly with a windowed linear-phase FIR whose delay is then taken back out."""
    kernel = fft.irfft(response(fft.rfftfreq(taps, 1.0 / sample_rate)), n=taps)
    kernel = np.roll(kernel, taps // 2) * np.hanning(taps)
    return np.roll(convolve_circular(audio, kernel), -(taps // 2), axis=-1)


def convolve_circular(audio: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    """Convolve a loop with an impulse response (per channel, or one for all), wrapping the tail onto the start.

    The linear convolution runs at a fast FFT length (a loop's own length may be prime) and is then folded.
    """
    frames = audio.shape[-1]
    full = frames + impulse.shape[-1] - 1
    size = _fast_length(full)
    spectrum = fft.rfft(audio, n=size, axis=-1) * fft.rfft(impulse, n=size, axis=-1)
    folded = LoopBuffer(frames)
    folded.add(0, fft.irfft(spectrum, n=size, axis=-1)[:, :full])
    return folded.audio


def _fast_length(minimum: int) -> int:
    """The smallest 2^a·3^b·5^c at least ``minimum``: a length numpy's FFT handles quickly."""
    best = 1 << (minimum - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35 * (1 << max(0, (-(-minimum // power35) - 1).bit_length()))
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def reverb_impulse(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A stereo room: decorrelated exponentially decaying noise per channel, darker as it decays.

    ``seconds`` is the RT60; the energy is normalised to one so the return level is the send level.
    """
    frames = int(seconds * 1.2 * sample_rate)
    t = np.arange(frames) / sample_rate
    noise = rng.standard_normal((2, frames)) * np.exp(-6.91 * t / seconds)
    bright = apply_filter(noise, highpass(300.0, 1), sample_rate)
    dark = apply_filter(noise, lowpass(2500.0, 1), sample_rate)
    mix = np.clip(t / seconds, 0.0, 1.0)
    impulse = (1.0 - mix) * bright + mix * dark
    impulse[:, : int(0.012 * sample_rate)] = 0.0  # pre-delay
    return impulse / np.sqrt(np.sum(impulse**2) / 2)
