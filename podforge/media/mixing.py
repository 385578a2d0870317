"""Mix and master in numpy: the bed ducked along the known speech timeline, hosts levelled, the master
normalised and limited on its true peak in one pass.

The dialogue step knows exactly when each line is spoken, so the bed does not need a sidechain to guess:

* **Hosts** are brought to one loudness (each host's lines measured together, at most
  :data:`HOST_LEVEL_RANGE_DB` of correction), so the bed masks neither of them more than the other.
* **The bed** is looped under the episode and follows one gain curve: ``mix.bed_level_db`` below the
  speech in the intro and outro, and under speech ducked by one steady amount chosen so that 9 of 10
  speech windows of 400 ms hear it at least ``mix.speech_over_bed_db`` below the speech. The curve
  changes only on raised-cosine ramps of ``mix.duck_ramp_s`` that end before a line starts and begin
  after it ends; pauses shorter than ``mix.duck_hold_s`` keep the bed down (no pumping between lines).
* **The master** is brought to ``mix.target_lufs`` with one gain and held under its true-peak ceiling by
  a look-ahead limiter on the 4× oversampled peaks: the gain falls smoothly before a peak, holds, and
  recovers (:func:`limiter_gain`). The ceiling is :data:`CODEC_HEADROOM_DB` below ``mix.true_peak_db``,
  the limit for every delivered file, because AAC and MP3 overshoot; the mux step re-limits if an
  encode still does (:func:`relimit`).

Loudness is computed in numpy (:mod:`podforge.media.loudness`) and checked on the written WAV by ffmpeg's
``ebur128`` (the reference meter); a residual error beyond :data:`TRIM_TOLERANCE_LU` is trimmed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import fft
import soundfile
from pydantic import BaseModel, Field

from podforge.config import EpisodeTiming, MixLevels
from podforge.media.audio import read_mono, read_stereo, write_wav
from podforge.media.ffmpeg import Loudness, measure_loudness
from podforge.media.loudness import (
    SILENCE_LUFS,
    SUB_BLOCK_S,
    block_energies,
    gated_loudness,
    k_weighting_power,
    sub_block_energies,
    sub_block_length,
    true_peaks,
)
from podforge.media.quality import QualityCheck, at_most, blocks_in, gain_swing_check, section_level_check, separation_check, separation_db, speech_windows
from podforge.timing import TimedLine

CONTROL_S = 0.01
"""The bed's gain curve is planned every 10 ms and interpolated between."""
FADE_IN_S = 1.5
FADE_OUT_S = 2.5
DUCK_LEAD_S = 0.05
"""The bed is fully down this long before a line starts."""
DUCK_TAIL_S = 0.1
"""The bed starts to rise this long after a line ends."""
BED_HIGHPASS_HZ = 30.0
HOST_LEVEL_RANGE_DB = 12.0
MAX_HOST_SPREAD_DB = 1.0
CODEC_HEADROOM_DB = 1.0
"""The master's true-peak ceiling sits this far below the limit of the delivered files (AAC/MP3 overshoot)."""
TRIM_TOLERANCE_LU = 0.2
LIMITER_RAMP_S = (0.005, 0.04)
"""Two box filters: the gain falls and recovers along their (S-shaped) convolution, about 45 ms."""
LIMITER_HOLD_S = 0.02
LIMITER_STEP_S = 0.001
"""The limiter plans its gain per millisecond (the ramps are far longer) and interpolates between."""
PEAK_SEARCH_DB = 5.0
"""Only stretches whose sample peaks come within this much of the ceiling are oversampled for true peaks
(inter-sample peaks of real audio exceed the samples by well under 3 dB)."""


class Master(BaseModel):
    wav: Path
    duration_s: float
    loudness: Loudness = Field(description="the WAV, measured by ffmpeg's ebur128")
    quality: list[QualityCheck] = Field(default_factory=list, description="separation, bed gain swing, intro and outro levels, hosts' levels")


class BedPlan(BaseModel):
    """The bed's gains (dB, unit bed) and the steady intro and outro sections they were set on."""

    intro_db: float
    outro_db: float
    ducked_db: float
    intro: tuple[float, float]
    outro: tuple[float, float]


def mix_and_master(dialogue_wav: Path, lines: Sequence[TimedLine], bed_wav: Path, levels: MixLevels, timing: EpisodeTiming, workdir: Path, binary: str | None = None) -> Master:
    """Mix the dialogue (``lines`` on its own clock) over the looped bed and master it into ``workdir/master.wav``."""
    rate = timing.sample_rate
    ceiling_db = levels.true_peak_db - CODEC_HEADROOM_DB
    speech, placed = place_dialogue(dialogue_wav, lines, timing)
    total = speech.size
    total_s = total / rate
    intervals = [(line.start_s, line.end_s) for line in placed]
    speech_sub, host_levels = level_hosts(speech, placed, rate)
    speech_lufs = gated_loudness(block_energies(speech_sub)[blocks_in(intervals, speech_sub.size)])

    loop, weighted_loop = bed_loop(bed_wav, rate)
    bed_sub = periodic_sub_block_energies(weighted_loop, total, rate)
    plan = plan_bed(speech_sub, bed_sub, speech_lufs, intervals, total_s, levels, timing)
    bed_gain = bed_gain_curve(plan, intervals, total, rate, levels, timing)
    mixed = compose(speech, loop, bed_gain)
    bed_sub_mixed = bed_sub * mean_per_sub_block(bed_gain**2, rate)
    gain_db, limit = master_gain(mixed, speech_sub + bed_sub_mixed, rate, levels.target_lufs, ceiling_db)

    # The limiter takes loudness from the speech's peaks, not from the bed alone in the intro and outro:
    # lower those by as much, so they keep their level relative to the speech.
    taken_db = gated_loudness(block_energies(speech_sub * mean_per_sub_block(limit_per_sample(limit, total, rate) ** 2, rate))) - speech_lufs
    if taken_db < -0.05:
        plan = plan.model_copy(update={"intro_db": plan.intro_db + taken_db, "outro_db": plan.outro_db + taken_db})
        bed_gain = bed_gain_curve(plan, intervals, total, rate, levels, timing)
        mixed = compose(speech, loop, bed_gain)
        bed_sub_mixed = bed_sub * mean_per_sub_block(bed_gain**2, rate)
    mixed *= (10 ** (gain_db / 20) * limit_per_sample(limit, total, rate))[:, None]
    master, master_sub = on_target(mixed, rate, levels.target_lufs)

    wav = workdir / "master.wav"
    write_wav(wav, master, rate)
    with ThreadPoolExecutor(max_workers=1) as meter:  # ebur128 reads the file while numpy measures the mix
        measuring = meter.submit(measure_loudness, wav, binary)
        quality = mix_checks(speech_sub, bed_sub, bed_sub_mixed, master_sub, intervals, plan, host_levels, levels)
        loudness = measuring.result()
    if abs(loudness.integrated_lufs - levels.target_lufs) > TRIM_TOLERANCE_LU:  # numpy and ebur128 disagree: aim off by the difference
        loudness = relimit(wav, wav, target_lufs=2 * levels.target_lufs - loudness.integrated_lufs, ceiling_db=ceiling_db, binary=binary)
    return Master(wav=wav, duration_s=total_s, loudness=loudness, quality=quality)


def relimit(source: Path, out: Path, *, target_lufs: float, ceiling_db: float, binary: str | None = None) -> Loudness:
    """Master ``source`` again at ``target_lufs`` (as numpy measures it) under ``ceiling_db`` into ``out``;
    returns ebur128's measurement of ``out``."""
    samples, rate = soundfile.read(str(source), dtype="float32", always_2d=True)
    gain_db, limit = master_gain(samples, sub_block_energies(samples, rate), rate, target_lufs, ceiling_db)
    samples *= (10 ** (gain_db / 20) * limit_per_sample(limit, samples.shape[0], rate))[:, None]
    write_wav(out, on_target(samples, rate, target_lufs)[0], rate)
    return measure_loudness(out, binary=binary)


# --- stems --------------------------------------------------------------------------------------------


def place_dialogue(dialogue_wav: Path, lines: Sequence[TimedLine], timing: EpisodeTiming) -> tuple[np.ndarray, list[TimedLine]]:
    """The dialogue on the episode clock (intro silence before, outro after) and its lines moved with it."""
    rate = timing.sample_rate
    if soundfile.info(str(dialogue_wav)).samplerate == rate:
        dialogue = soundfile.read(str(dialogue_wav), dtype="float32", always_2d=True)[0].mean(axis=1)
    else:
        dialogue = read_mono(dialogue_wav, rate)
    offset = int(round(timing.intro_s * rate))
    speech = np.zeros(offset + dialogue.size + int(round(timing.outro_s * rate)), dtype=np.float32)
    speech[offset : offset + dialogue.size] = dialogue
    return speech, [line.shifted(offset / rate) for line in lines]


def level_hosts(speech: np.ndarray, lines: Sequence[TimedLine], rate: int) -> tuple[np.ndarray, dict[int, float]]:
    """In place: each line without DC, each host brought to the hosts' mean loudness (at most
    :data:`HOST_LEVEL_RANGE_DB` of correction). Returns the levelled speech's sub-block energies as mixed
    (centred: the same signal in both channels) and each host's loudness after levelling."""
    spans = {line.index: (int(round(line.start_s * rate)), int(round(line.end_s * rate))) for line in lines}
    for start, end in spans.values():
        if end > start:
            speech[start:end] -= speech[start:end].mean()
    sub = 2 * sub_block_energies(speech, rate)
    blocks = block_energies(sub)
    measured: dict[int, float] = {}
    for host in sorted({line.host for line in lines}):
        inside = blocks_in([(line.start_s, line.end_s) for line in lines if line.host == host], sub.size)
        level = gated_loudness(blocks[inside]) if inside.any() else SILENCE_LUFS
        if level > SILENCE_LUFS:
            measured[host] = level
    if len(measured) < 2:
        return sub, measured
    common = float(np.mean(list(measured.values())))
    gains_db = {host: float(np.clip(common - level, -HOST_LEVEL_RANGE_DB, HOST_LEVEL_RANGE_DB)) for host, level in measured.items()}
    gains = np.ones(speech.size, dtype=np.float32)
    for line in lines:
        start, end = spans[line.index]
        gains[start:end] = 10 ** (gains_db.get(line.host, 0.0) / 20)
    speech *= gains
    return sub * mean_per_sub_block(gains**2, rate), {host: level + gains_db[host] for host, level in measured.items()}


def bed_loop(bed_wav: Path, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The bed loop (stereo, at ``rate``) without rumble below :data:`BED_HIGHPASS_HZ`, and that loop
    K-weighted (for its loudness). Both filters are zero-phase and circular, so the loop stays seamless."""
    loop = read_stereo(bed_wav, rate)
    count = loop.shape[0]
    if count < 2:
        return loop, loop
    margin = min(count, int(0.5 * rate))  # the loop's own end and start around it: circular filtering
    extended = np.concatenate([loop[-margin:], loop, loop[:margin]])
    size = fast_length(extended.shape[0])
    spectrum = fft.rfft(extended, n=size, axis=0)
    freqs = fft.rfftfreq(size, 1 / rate)
    highpass = (freqs**2 / np.sqrt(freqs**4 + BED_HIGHPASS_HZ**4)).astype(np.float32)[:, None]
    spectrum *= highpass
    filtered = fft.irfft(spectrum, n=size, axis=0)[margin : margin + count].astype(np.float32)
    weighted = fft.irfft(spectrum * np.sqrt(k_weighting_power(freqs, rate))[:, None], n=size, axis=0)[margin : margin + count]
    return filtered, weighted


def fast_length(minimum: int) -> int:
    """The smallest 2^a·3^b·5^c ≥ ``minimum``: an FFT size numpy transforms quickly."""
    best = 1 << max(0, minimum - 1).bit_length()
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            size = threes
            while size < minimum:
                size *= 2
            best = min(best, size)
            threes *= 3
        fives *= 5
    return best


def periodic_sub_block_energies(weighted_loop: np.ndarray, total: int, rate: int) -> np.ndarray:
    """Sub-block energies of a K-weighted loop repeated to ``total`` samples (running sums over one period)."""
    length = sub_block_length(rate)
    count = max(1, math.ceil(total / length))
    period = weighted_loop.shape[0]
    if period == 0:
        return np.zeros(count)
    cumulative = np.concatenate([[0.0], np.cumsum((weighted_loop.astype(np.float64) ** 2).sum(axis=1))])

    def running_sum(position: np.ndarray) -> np.ndarray:
        return (position // period) * cumulative[-1] + cumulative[position % period]

    starts = np.arange(count, dtype=np.int64) * length
    return (running_sum(np.minimum(starts + length, total)) - running_sum(starts)) / length


def compose(speech: np.ndarray, loop: np.ndarray, bed_gain: np.ndarray) -> np.ndarray:
    """Stereo frames: the loop repeated under the episode at ``bed_gain``, the speech centred over it."""
    mixed = np.resize(loop, (speech.size, 2))
    mixed *= bed_gain[:, None]
    mixed += speech[:, None]
    return mixed


def mean_per_sub_block(values: np.ndarray, rate: int) -> np.ndarray:
    length = sub_block_length(rate)
    count = max(1, math.ceil(values.size / length))
    whole = values.size // length
    means = np.zeros(count)
    means[:whole] = values[: whole * length].reshape(whole, length).mean(axis=1, dtype=np.float64)
    if whole < count:
        means[whole] = values[whole * length :].sum(dtype=np.float64) / length
    return means


# --- the bed's gain -----------------------------------------------------------------------------------


def speech_runs(intervals: Sequence[tuple[float, float]], hold_s: float) -> list[tuple[float, float]]:
    """The lines joined across pauses shorter than ``hold_s``: the stretches the bed stays down for."""
    runs: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if runs and start - runs[-1][1] < hold_s:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end))
        else:
            runs.append((start, end))
    return runs


def _edges(levels: MixLevels) -> tuple[float, float]:
    """How far before a run and after it the duck's plateau reaches (the ramps are centred on its edges)."""
    return levels.duck_ramp_s / 2 + DUCK_LEAD_S, levels.duck_ramp_s / 2 + DUCK_TAIL_S


def _fades(total_s: float, timing: EpisodeTiming) -> tuple[float, float]:
    fade_in = max(CONTROL_S, min(FADE_IN_S, timing.intro_s / 2, total_s / 4))
    fade_out = max(CONTROL_S, min(FADE_OUT_S, timing.outro_s / 2, total_s / 4))
    return fade_in, fade_out


def plan_bed(speech_sub: np.ndarray, bed_sub: np.ndarray, speech_lufs: float, intervals: Sequence[tuple[float, float]], total_s: float, levels: MixLevels, timing: EpisodeTiming) -> BedPlan:
    """Gains for the unit bed: intro and outro at ``bed_level_db`` from the speech, measured on the bed that
    plays there; under speech, 9 windows in 10 at least ``speech_over_bed_db`` below the speech."""
    runs = speech_runs(intervals, levels.duck_hold_s) or [(total_s, total_s)]
    lead, tail = _edges(levels)
    fade_in, fade_out = _fades(total_s, timing)
    intro = (fade_in, max(fade_in, runs[0][0] - lead - levels.duck_ramp_s / 2))
    outro = (min(total_s - fade_out, runs[-1][1] + tail + levels.duck_ramp_s / 2), total_s - fade_out)
    bed_blocks = block_energies(bed_sub)
    whole_bed = gated_loudness(bed_blocks)
    if whole_bed <= SILENCE_LUFS:
        return BedPlan(intro_db=0.0, outro_db=0.0, ducked_db=0.0, intro=intro, outro=outro)

    def gain_for(section: tuple[float, float]) -> float:
        inside = blocks_in([section], bed_sub.size)
        bed = gated_loudness(bed_blocks[inside]) if inside.any() else whole_bed
        return float(np.clip(speech_lufs + levels.bed_level_db - (bed if bed > SILENCE_LUFS else whole_bed), -60.0, 30.0))

    intro_db, outro_db = gain_for(intro), gain_for(outro)
    windows = speech_windows(speech_sub, intervals)
    if windows.any():
        apart = separation_db(speech_sub, bed_sub, windows)
        ducked_db = float(np.percentile(apart, 10)) - levels.speech_over_bed_db
    else:
        ducked_db = min(intro_db, outro_db) - levels.speech_over_bed_db
    ducked_db = float(np.clip(ducked_db, min(intro_db, outro_db) - 40.0, min(intro_db, outro_db)))
    return BedPlan(intro_db=intro_db, outro_db=outro_db, ducked_db=ducked_db, intro=intro, outro=outro)


def bed_gain_db(plan: BedPlan, intervals: Sequence[tuple[float, float]], total_s: float, levels: MixLevels, timing: EpisodeTiming) -> np.ndarray:
    """The bed's gain (dB) every :data:`CONTROL_S`: free level, ducked stretches, ramps and fades."""
    count = int(math.ceil(total_s / CONTROL_S)) + 1
    times = np.arange(count) * CONTROL_S
    runs = speech_runs(intervals, levels.duck_hold_s)
    lead, tail = _edges(levels)
    ducked = np.zeros(count)
    for start, end in runs:
        ducked[max(0, int(round((start - lead) / CONTROL_S))) : max(0, int(round((end + tail) / CONTROL_S)))] = 1.0
    ramp = max(1, int(round(levels.duck_ramp_s / CONTROL_S)))
    if ramp > 1:
        window = np.hanning(ramp + 2)[1:-1]
        ducked = np.convolve(np.pad(ducked, ramp, mode="edge"), window / window.sum(), mode="same")[ramp:-ramp]
    free = np.where(times > (runs[-1][1] if runs else 0.0), plan.outro_db, plan.intro_db)
    gain_db = free * (1 - ducked) + plan.ducked_db * ducked
    fade_in, fade_out = _fades(total_s, timing)
    fade = np.clip(np.minimum(times / fade_in, (total_s - times) / fade_out), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return gain_db + 20 * np.log10(np.maximum(0.5 - 0.5 * np.cos(np.pi * fade), 1e-6))


def bed_gain_curve(plan: BedPlan, intervals: Sequence[tuple[float, float]], total: int, rate: int, levels: MixLevels, timing: EpisodeTiming) -> np.ndarray:
    """The bed's linear gain for each of ``total`` samples (the 10 ms plan, interpolated)."""
    control = bed_gain_db(plan, intervals, total / rate, levels, timing)
    return expand_linear(np.power(10.0, control / 20), int(round(CONTROL_S * rate)), total)


def expand_linear(points: np.ndarray, spacing: int, total: int) -> np.ndarray:
    """``total`` samples through ``points`` placed every ``spacing`` samples, linear in between (float32)."""
    points = np.asarray(points, dtype=np.float32)
    needed = total // spacing + 2
    if points.size < needed:
        points = np.concatenate([points, np.full(needed - points.size, points[-1], dtype=np.float32)])
    fraction = np.arange(spacing, dtype=np.float32) / spacing
    ramps = points[: needed - 1, None] + (points[1:needed] - points[: needed - 1])[:, None] * fraction[None, :]
    return ramps.reshape(-1)[:total]


# --- loudness and the limiter -------------------------------------------------------------------------


def sliding_min(values: np.ndarray, width: int) -> np.ndarray:
    """``out[i] = min(values[i : i + width])`` for every full window (van Herk / Gil-Werman, O(n))."""
    count = values.size
    blocks = math.ceil(count / width)
    padded = np.full(blocks * width, np.inf, dtype=values.dtype)
    padded[:count] = values
    grid = padded.reshape(blocks, width)
    prefix = np.minimum.accumulate(grid, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    return np.minimum(suffix[: count - width + 1], prefix[width - 1 : count])


def trailing_mean(values: np.ndarray, width: int) -> np.ndarray:
    """``out[i]`` = mean of the ``width`` values up to ``i`` (1.0 before the start: no gain change)."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.concatenate([np.ones(width), values]))])
    return (cumulative[width + 1 :] - cumulative[1:-width]) / width


def limiter_gain(peaks: np.ndarray, ceiling: float) -> np.ndarray:
    """The gain per :data:`LIMITER_STEP_S` step that keeps ``peaks`` (each step's true peak) under ``ceiling``.

    Each step's needed gain is spread by a sliding minimum over the hold before it and the ramps after it,
    then smoothed by two trailing means as long as the ramps. Every mean around a peak averages only values
    already at or under that peak's need, so no peak passes the ceiling, and the gain falls and recovers
    along an S-curve of about 45 ms instead of jumping. Interpolating between steps keeps that true: both
    steps around a sample lie within the reach of its peak.
    """
    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-9))
    if need.min() >= 1.0:
        return np.ones_like(need)
    first, second = (max(1, int(round(seconds / LIMITER_STEP_S))) for seconds in LIMITER_RAMP_S)
    hold = max(1, int(round(LIMITER_HOLD_S / LIMITER_STEP_S)))
    reach = first + second
    padded = np.concatenate([np.ones(hold), need, np.ones(reach)])
    spread = sliding_min(padded, hold + reach + 1)  # spread[k] = min(need[k - hold : k + reach + 1])
    return np.minimum(trailing_mean(trailing_mean(spread, first), second), 1.0)


def limit_per_sample(limit: np.ndarray, total: int, rate: int) -> np.ndarray:
    """The limiter's step gains interpolated to ``total`` samples (step ``k`` sits at its first sample)."""
    return expand_linear(limit, _step_length(rate), total)


def _step_length(rate: int) -> int:
    return max(1, int(round(LIMITER_STEP_S * rate)))


def master_gain(mixed: np.ndarray, sub: np.ndarray, rate: int, target_lufs: float, ceiling_db: float) -> tuple[float, np.ndarray]:
    """The gain (dB) that brings ``mixed`` (sub-block energies ``sub``) to ``target_lufs``, and the limiter's
    gain per step that then holds its true peak under ``ceiling_db``.

    The limiter takes a little loudness from the peaks; the gain is raised by what it took and the limiter
    planned again (the loudness after limiting is estimated from the sub-block energies).
    """
    before = gated_loudness(block_energies(sub))
    step = _step_length(rate)
    steps = math.ceil(mixed.shape[0] / step)
    if before <= SILENCE_LUFS:
        return 0.0, np.ones(steps)
    gain_db = target_lufs - before
    ceiling = 10 ** (ceiling_db / 20)
    peaks = true_peaks(mixed, block=step, floor=ceiling * 10 ** (-(gain_db + PEAK_SEARCH_DB) / 20))
    steps_per_sub = max(1, int(round(SUB_BLOCK_S / LIMITER_STEP_S)))
    energy = np.zeros(sub.size * steps_per_sub)  # each step's share of its sub-block's energy: peaks carry most of it
    per_step = np.add.reduceat(np.einsum("ij,ij->i", mixed, mixed), np.arange(0, mixed.shape[0], step))
    energy[: min(per_step.size, energy.size)] = per_step[: energy.size]
    energy = energy.reshape(sub.size, steps_per_sub)
    totals = np.maximum(energy.sum(axis=1), 1e-30)
    for _ in range(4):
        limit = limiter_gain(peaks * 10 ** (gain_db / 20), ceiling)
        squared = np.ones(energy.size)
        squared[: min(limit.size, squared.size)] = limit[: squared.size] ** 2
        kept = (energy * squared.reshape(energy.shape)).sum(axis=1) / totals
        achieved = gated_loudness(block_energies(sub * 10 ** (gain_db / 10) * kept))
        if abs(achieved - target_lufs) < 0.02:
            break
        gain_db += target_lufs - achieved
    return gain_db, limit


def on_target(master: np.ndarray, rate: int, target_lufs: float) -> tuple[np.ndarray, np.ndarray]:
    """``master`` nudged onto ``target_lufs`` as measured on itself (the limiter's effect was estimated), and
    its sub-block energies. The nudge is a few hundredths of a dB, well inside the codec headroom."""
    sub = sub_block_energies(master, rate)
    correction_db = target_lufs - gated_loudness(block_energies(sub))
    if abs(correction_db) > 0.01 and abs(correction_db) < 3.0:
        master *= np.float32(10 ** (correction_db / 20))
        sub = sub * 10 ** (correction_db / 10)
    return master, sub


# --- what the mix measures about itself ---------------------------------------------------------------


def mix_checks(
    speech_sub: np.ndarray,
    unit_bed_sub: np.ndarray,
    bed_sub: np.ndarray,
    master_sub: np.ndarray,
    intervals: Sequence[tuple[float, float]],
    plan: BedPlan,
    host_levels: dict[int, float],
    levels: MixLevels,
) -> list[QualityCheck]:
    """Separation and gain swing under speech (stems as mixed), intro and outro level (the master), hosts' levels."""
    windows = speech_windows(speech_sub, intervals)
    speech_in_master = gated_loudness(block_energies(master_sub)[blocks_in(intervals, master_sub.size)])
    with np.errstate(divide="ignore", invalid="ignore"):
        bed_gain_per_window = 10 * np.log10(block_energies(bed_sub)[windows] / block_energies(unit_bed_sub)[windows])
    bed_gain_per_window = bed_gain_per_window[np.isfinite(bed_gain_per_window)]
    checks = [
        separation_check(separation_db(speech_sub, bed_sub, windows)),
        gain_swing_check(bed_gain_per_window),
        section_level_check("intro level", master_sub, plan.intro, speech_in_master, levels.bed_level_db),
        section_level_check("outro level", master_sub, plan.outro, speech_in_master, levels.bed_level_db),
    ]
    if len(host_levels) > 1:
        spread = max(host_levels.values()) - min(host_levels.values())
        checks.append(at_most("hosts' loudness spread", spread, MAX_HOST_SPREAD_DB, unit="dB", detail=", ".join(f"host {host + 1}: {level:.1f} LUFS" for host, level in sorted(host_levels.items()))))
    return checks
