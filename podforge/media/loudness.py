"""Loudness and true peak in numpy (ITU-R BS.1770-4), for the mix to plan its gains with.

The mix needs loudness many times over (each host, the bed under speech, the intro, the master before and
after limiting); one ffmpeg pass each would cost a decode and a process per number. Here a signal is
K-weighted once, in 100 ms sub-blocks, and everything else is sums of those energies:

* a **sub-block** is 100 ms; its energy is the K-weighted mean square, summed over channels (left and
  right weigh 1). K-weighting is applied in the frequency domain, sub-block by sub-block (the filter's
  magnitude response, which is all a mean square depends on);
* a **block** is 400 ms (four sub-blocks, so blocks overlap by 75 %), the unit of BS.1770's gating and
  of the mix's speech windows;
* **integrated loudness** gates blocks at -70 LUFS, then 10 LU below their mean, as BS.1770 does.

True peak is the largest absolute sample after 4× band-limited interpolation (each chunk's spectrum
zero-padded). ffmpeg's ``ebur128`` filter stays the reference for every delivered file
(:mod:`podforge.media.quality`); tests hold these numbers to it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

SUB_BLOCK_S = 0.1
BLOCK_SUB_BLOCKS = 4
"""A 400 ms gating block is four 100 ms sub-blocks; one starts every sub-block (75 % overlap)."""
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
SILENCE_LUFS = -70.0
"""What the loudness of silence (or of nothing) is reported as, like ebur128's floor."""
TRUE_PEAK_OVERSAMPLING = 4
_PEAK_CHUNK = 1024
_PEAK_MARGIN = 32


def as_channels(samples: np.ndarray) -> np.ndarray:
    """``samples`` as (frames, channels) float32: a mono signal becomes one column."""
    array = np.asarray(samples, dtype=np.float32)
    return array[:, None] if array.ndim == 1 else array


def columnwise_max(values: np.ndarray) -> np.ndarray:
    """The largest value in each row of a (rows, a few columns) array, taken column by column: numpy's
    ``max(axis=1)`` over so short an axis is about ten times slower."""
    largest = values[:, 0].copy()
    for column in range(1, values.shape[1]):
        np.maximum(largest, values[:, column], out=largest)
    return largest


def sub_block_length(rate: int) -> int:
    return int(round(SUB_BLOCK_S * rate))


def k_weighting_power(freqs: np.ndarray, rate: int) -> np.ndarray:
    """|H(f)|² of the K-weighting filter (BS.1770's shelf and high-pass, designed for ``rate``)."""
    z = np.exp(-1j * 2 * np.pi * freqs / rate)

    def biquad(b: tuple[float, float, float], a: tuple[float, float, float]) -> np.ndarray:
        return np.abs((b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)) ** 2

    # High shelf: +4 dB above about 1.7 kHz (the head's acoustic effect).
    k = math.tan(math.pi * 1681.974450955533 / rate)
    gain, q = 10 ** (3.999843853973347 / 20), 0.7071752369554196
    band = gain**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = biquad(((gain + band * k / q + k * k) / a0, 2 * (k * k - gain) / a0, (gain - band * k / q + k * k) / a0), (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0))
    # High-pass at about 38 Hz (the RLB curve).
    k = math.tan(math.pi * 38.13547087602444 / rate)
    q = 0.5003270373238773
    a0 = 1 + k / q + k * k
    highpass = biquad((1.0, -2.0, 1.0), (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0))
    return (shelf * highpass).astype(np.float32)


def sub_block_energies(samples: np.ndarray, rate: int) -> np.ndarray:
    """K-weighted mean square of each 100 ms sub-block, summed over channels (the last one zero-padded)."""
    frames = as_channels(samples)
    length = sub_block_length(rate)
    count = max(1, math.ceil(frames.shape[0] / length))
    weights = k_weighting_power(fft.rfftfreq(length, 1 / rate), rate)
    weights[1 : (length + 1) // 2] *= 2  # rfft bins stand for their negative-frequency twins too
    total = np.zeros(count, dtype=np.float64)
    for channel in range(frames.shape[1]):
        padded = np.zeros(count * length, dtype=np.float32)
        padded[: frames.shape[0]] = frames[:, channel]
        spectrum = fft.rfft(padded.reshape(count, length), axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        total += (power @ weights).astype(np.float64) / (length * length)
    return total


def block_energies(sub_blocks: np.ndarray) -> np.ndarray:
    """Mean energy of each 400 ms block (block ``j`` covers sub-blocks ``j`` to ``j + 3``)."""
    if sub_blocks.size < BLOCK_SUB_BLOCKS:
        return np.array([sub_blocks.mean()]) if sub_blocks.size else np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(sub_blocks)])
    return (cumulative[BLOCK_SUB_BLOCKS:] - cumulative[:-BLOCK_SUB_BLOCKS]) / BLOCK_SUB_BLOCKS


def energy_to_lufs(energy: np.ndarray | float) -> np.ndarray | float:
    """Loudness of a K-weighted energy; silence is :data:`SILENCE_LUFS`."""
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10 * np.log10(np.maximum(energy, 0.0))
    return np.maximum(lufs, SILENCE_LUFS)


def gated_loudness(blocks: np.ndarray) -> float:
    """BS.1770 integrated loudness of 400 ms block energies: absolute gate, then relative gate."""
    if blocks.size == 0:
        return SILENCE_LUFS
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(np.maximum(blocks, 1e-20))
    loud = blocks[levels > ABSOLUTE_GATE_LUFS]
    if loud.size == 0:
        return SILENCE_LUFS
    relative_gate = float(energy_to_lufs(loud.mean())) + RELATIVE_GATE_LU
    kept = blocks[levels > relative_gate]
    return float(energy_to_lufs(kept.mean())) if kept.size else SILENCE_LUFS


def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    return gated_loudness(block_energies(sub_block_energies(samples, rate)))


def true_peaks(samples: np.ndarray, block: int = 1, *, floor: float = 0.0, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> np.ndarray:
    """The largest absolute value in each run of ``block`` samples, over the channels, after
    ``oversampling``× interpolation (points between a sample and the next count for that sample).

    Only chunks whose samples reach ``floor`` are interpolated; elsewhere the samples' peak is returned.
    Inter-sample peaks of real audio exceed the samples by well under 3 dB, so a limiter asks for true
    peaks only near its ceiling.
    """
    frames = as_channels(samples)
    count = frames.shape[0]
    chunks = max(1, math.ceil(count / _PEAK_CHUNK))
    envelope = np.zeros(chunks * _PEAK_CHUNK, dtype=np.float32)
    envelope[:count] = columnwise_max(np.abs(frames))
    loud = np.flatnonzero(envelope.reshape(chunks, _PEAK_CHUNK).max(axis=1) >= floor)
    width = _PEAK_CHUNK + 2 * _PEAK_MARGIN
    grid = envelope.reshape(chunks, _PEAK_CHUNK)
    for channel in range(frames.shape[1]):
        padded = np.zeros(chunks * _PEAK_CHUNK + 2 * _PEAK_MARGIN, dtype=np.float32)
        padded[_PEAK_MARGIN : _PEAK_MARGIN + count] = frames[:, channel]
        views = np.lib.stride_tricks.sliding_window_view(padded, width)
        for batch in np.array_split(loud, math.ceil(loud.size / 256)) if loud.size else []:  # bounded memory
            upsampled = fft.irfft(fft.rfft(views[batch * _PEAK_CHUNK], axis=1), n=width * oversampling, axis=1)
            middle = upsampled[:, _PEAK_MARGIN * oversampling : (_PEAK_MARGIN + _PEAK_CHUNK) * oversampling] * oversampling
            grid[batch] = np.maximum(grid[batch], columnwise_max(np.abs(middle).reshape(batch.size * _PEAK_CHUNK, oversampling)).reshape(batch.size, _PEAK_CHUNK))
    blocks = math.ceil(count / block)
    padded_envelope = np.zeros(blocks * block, dtype=np.float32)
    padded_envelope[:count] = envelope[:count]
    return padded_envelope.reshape(blocks, block).max(axis=1)


def true_peak_db(samples: np.ndarray) -> float:
    """True peak in dBTP (relative to full scale); silence is -inf."""
    if np.asarray(samples).size == 0:
        return -math.inf
    peak = float(true_peaks(samples, block=max(1, np.asarray(samples).shape[0])).max())
    return 20 * math.log10(peak) if peak > 0 else -math.inf
