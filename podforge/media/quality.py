"""Quality checks: what an episode measures about itself, against its targets, for the manifest and report.

A :class:`QualityCheck` is one named measurement with its target and a pass/fail. Steps put the checks
they can make into their results (a ``quality`` list); the publish step collects every step's checks into
the manifest's ``quality`` section and the report's table. A new kind of check (caption reading speed,
word error rate per host, lip sync) is one more entry, made with :func:`at_least`, :func:`at_most` or
:func:`within`.

The measurements of the mix and the delivered files live here too:

* **speech over bed**: in every 400 ms window where someone speaks (the window lies inside a line and
  its speech is no more than 10 LU below the speech's integrated loudness, BS.1770's relative gate), the
  speech's loudness minus the bed's, both as mixed; the check is on the 10th percentile (9 windows in 10
  at least this far apart);
* **bed gain swing**: the spread (10th to 90th percentile) of the gain the mix applies to the bed over
  those windows: a bed that pumps under speech swings;
* **intro / outro level**: the loudness of the intro's (outro's) steady part, where only the bed plays,
  relative to the loudness of the speech in the master;
* **delivered loudness**: integrated loudness and true peak of each delivered file, decoded and
  measured by ffmpeg's ``ebur128`` filter (the reference meter), files measured side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from podforge.media.ffmpeg import Loudness, measure_loudness
from podforge.media.loudness import BLOCK_SUB_BLOCKS, RELATIVE_GATE_LU, SUB_BLOCK_S, block_energies, energy_to_lufs, gated_loudness

SEPARATION_PERCENTILE = 10.0
MIN_SEPARATION_DB = 12.0
MAX_GAIN_SWING_DB = 3.0
LEVEL_TOLERANCE_DB = 1.0
LOUDNESS_TOLERANCE_LU = 0.5


class QualityCheck(BaseModel):
    """One measured property of the episode, its target, and whether it meets it."""

    name: str = Field(description="what was measured, e.g. 'loudness', 'speech over bed'")
    scope: str = Field(default="", description="where: a delivered file, 'intro', a host; empty for the whole episode")
    value: float | None = Field(description="the measurement; None when it could not be made (see detail)")
    unit: str = ""
    target: str = Field(description="the target as a person reads it, e.g. '≥ 12', '-16 ± 0.5'")
    passed: bool
    detail: str = ""

    def shown_value(self) -> str:
        return "n/a" if self.value is None else f"{self.value:.1f} {self.unit}".strip()


def at_least(name: str, value: float, minimum: float, *, unit: str = "", scope: str = "", detail: str = "") -> QualityCheck:
    return QualityCheck(name=name, scope=scope, value=round(value, 2), unit=unit, target=f"≥ {minimum:g}", passed=value >= minimum, detail=detail)


def at_most(name: str, value: float, maximum: float, *, unit: str = "", scope: str = "", detail: str = "") -> QualityCheck:
    return QualityCheck(name=name, scope=scope, value=round(value, 2), unit=unit, target=f"≤ {maximum:g}", passed=value <= maximum, detail=detail)


def within(name: str, value: float, target: float, tolerance: float, *, unit: str = "", scope: str = "", detail: str = "") -> QualityCheck:
    return QualityCheck(name=name, scope=scope, value=round(value, 2), unit=unit, target=f"{target:g} ± {tolerance:g}", passed=abs(value - target) <= tolerance, detail=detail)


def not_measured(name: str, target: str, why: str, *, scope: str = "") -> QualityCheck:
    """A check that does not apply to this episode (an intro too short to have a steady part): it passes."""
    return QualityCheck(name=name, scope=scope, value=None, target=target, passed=True, detail=why)


def failed(checks: Sequence[QualityCheck]) -> list[QualityCheck]:
    return [check for check in checks if not check.passed]


# --- the mix ------------------------------------------------------------------------------------------


def sub_blocks_in(intervals: Sequence[tuple[float, float]], count: int) -> np.ndarray:
    """Per 100 ms sub-block, whether it lies wholly inside one of ``intervals`` (seconds)."""
    inside = np.zeros(count, dtype=bool)
    for start, end in intervals:
        first, last = math.ceil(round(start / SUB_BLOCK_S, 6)), math.floor(round(end / SUB_BLOCK_S, 6))
        inside[max(0, first) : max(0, min(count, last))] = True
    return inside


def blocks_in(intervals: Sequence[tuple[float, float]], sub_block_count: int) -> np.ndarray:
    """Per 400 ms block, whether all four of its sub-blocks lie inside ``intervals``."""
    inside = sub_blocks_in(intervals, sub_block_count).astype(np.int32)
    if sub_block_count < BLOCK_SUB_BLOCKS:
        return np.zeros(0, dtype=bool)
    cumulative = np.concatenate([[0], np.cumsum(inside)])
    return (cumulative[BLOCK_SUB_BLOCKS:] - cumulative[:-BLOCK_SUB_BLOCKS]) == BLOCK_SUB_BLOCKS


def speech_windows(speech_sub: np.ndarray, lines: Sequence[tuple[float, float]]) -> np.ndarray:
    """The 400 ms blocks in which someone speaks: inside a line, and no more than 10 LU below the speech's
    integrated loudness."""
    blocks = block_energies(speech_sub)
    inside = blocks_in(lines, speech_sub.size)
    speech_lufs = gated_loudness(blocks[inside]) if inside.any() else gated_loudness(blocks)
    return inside & (energy_to_lufs(blocks) >= speech_lufs + RELATIVE_GATE_LU)


def separation_db(speech_sub: np.ndarray, bed_sub: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Speech loudness minus bed loudness (dB) in each speech window; stems as mixed, energies per sub-block."""
    return (energy_to_lufs(block_energies(speech_sub))[windows] - energy_to_lufs(block_energies(bed_sub))[windows]).astype(float)


def separation_check(separation: np.ndarray) -> QualityCheck:
    if separation.size == 0:
        return not_measured("speech over bed", f"≥ {MIN_SEPARATION_DB:g} dB", "no 400 ms window of speech")
    low = float(np.percentile(separation, SEPARATION_PERCENTILE))
    share = float((separation >= MIN_SEPARATION_DB).mean())
    detail = f"10th percentile of {separation.size} speech windows of 400 ms; {share:.0%} at least {MIN_SEPARATION_DB:g} dB apart, median {np.median(separation):.1f} dB"
    return at_least("speech over bed", low, MIN_SEPARATION_DB, unit="dB", detail=detail)


def gain_swing_check(bed_gain_db_per_window: np.ndarray) -> QualityCheck:
    if bed_gain_db_per_window.size == 0:
        return not_measured("bed gain swing under speech", f"≤ {MAX_GAIN_SWING_DB:g} dB", "no 400 ms window of speech")
    swing = float(np.percentile(bed_gain_db_per_window, 90) - np.percentile(bed_gain_db_per_window, 10))
    return at_most("bed gain swing under speech", swing, MAX_GAIN_SWING_DB, unit="dB", detail="10th to 90th percentile of the bed's gain over the speech windows")


def section_level_check(name: str, master_sub: np.ndarray, section: tuple[float, float], speech_lufs: float, target_db: float) -> QualityCheck:
    """The loudness of ``section`` (seconds; only the bed plays there) relative to the speech, against ``target_db``."""
    inside = blocks_in([section], master_sub.size)
    if not inside.any():
        return not_measured(name, f"{target_db:g} ± {LEVEL_TOLERANCE_DB:g} dB", f"no steady 400 ms of bed ({section[0]:.1f}-{section[1]:.1f} s)", scope=name.split()[0])
    level = gated_loudness(block_energies(master_sub)[inside])
    detail = f"bed {level:.1f} LUFS from {section[0]:.1f} to {section[1]:.1f} s, speech {speech_lufs:.1f} LUFS"
    return within(name, level - speech_lufs, target_db, LEVEL_TOLERANCE_DB, unit="dB", detail=detail)


# --- delivered files --------------------------------------------------------------------------------


def measure_files(paths: Sequence[Path], binary: str | None = None) -> list[Loudness]:
    """ebur128 loudness and true peak of each file, decoded and measured side by side (one ffmpeg each)."""
    with ThreadPoolExecutor(max_workers=max(1, len(paths))) as pool:
        return list(pool.map(lambda path: measure_loudness(path, binary=binary), paths))


def delivery_checks(file: str, loudness: Loudness, *, target_lufs: float, peak_limit_db: float) -> list[QualityCheck]:
    return [
        within("loudness", loudness.integrated_lufs, target_lufs, LOUDNESS_TOLERANCE_LU, unit="LUFS", scope=file),
        at_most("true peak", loudness.true_peak_dbtp, peak_limit_db, unit="dBTP", scope=file),
    ]
