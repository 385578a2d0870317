"""Subtitles from the TTS timing: cues people can read, written as SRT, WebVTT and ASS (for burn-in).

The rules, each a small function:

* **Form** (:func:`wrap_lines`): at most :data:`MAX_LINE_CHARS` characters on a line and
  :data:`MAX_LINES` lines on a cue, the speaker's name counted where it is shown; two lines are cut where
  they read best (after punctuation, not after "the").
* **Timing** (:func:`cue_end`): a cue starts at its first word's start, never earlier, and ends at its
  last word's end, held on into the following silence as long as it needs to last
  :data:`MIN_CUE_S` and to be read at :data:`MAX_CPS` characters per second, but never into the next cue.
* **Cutting a line into cues** (:func:`split_line`): of all ways to cut a host's line at word
  boundaries, one with the fewest cues that read too fast or are too short (none, where the audio
  allows), and among those the least :func:`cue_cost`: how far over the limits, cuts inside a clause
  or after "the", the number of cues.
* **Merging across hosts** (:func:`merge_exchanges`): a quick reply that cannot be shown long enough
  before the other host speaks shares a two-line cue with its neighbour, one host per line.

Cues are built with the hosts' names for the sidecar files (SRT, WebVTT) and without them for the picture
(ASS, each host in a colour): renaming a host must not re-render the video.

:func:`caption_stats` measures the result (reading speed, line lengths, durations) for the manifest and
the report; :func:`parse_srt` reads a delivered SRT back for the same measurement.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, Field, computed_field

from podforge.media.quality import QualityCheck, at_least, at_most
from podforge.textnorm import time_written_words
from podforge.timing import TimedLine, WordTiming

CAPTION_RULES_VERSION = "2"
"""Changes whenever the cue rules change: part of the captions step's cache key."""
MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_S = 0.83
MAX_CUE_S = 7.0
MAX_CPS = 17.0
ROUNDING_MARGIN_S = 0.002
"""Added to the time a cue needs, so that times rounded to milliseconds in the files still meet the targets."""
LAST_CUE_HOLD_S = 2.0
"""How long past its last word the episode's last cue may stay up (there is no next cue to stop it)."""
_FILE_ROUNDING_S = 0.0015
"""Times read back from a file are rounded to the millisecond."""
SPEAKER_COLOURS = ("&H00FFD27F", "&H007FE0FF", "&H00A0FFA0", "&H00FFA0FF")  # ASS is &HAABBGGRR

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–][\"'”’)\]]*$|^[-–—]$")
_WEAK_ENDINGS = {"a", "an", "the", "of", "to", "in", "on", "at", "for", "with", "by", "from", "and", "or", "but", "my", "your", "our", "their", "his", "her", "its", "is", "are", "was", "i", "we", "you"}


class CueLine(BaseModel):
    """One line of a cue: a host's words, and whether the line starts that host's turn (then writers show
    the name before it)."""

    host: int = Field(default=0, ge=0, description="the speaker's position in the cast (their colour)")
    speaker: str = Field(default="", description="the name shown before the line when labelled; empty: none")
    text: str
    labelled: bool = False

    @property
    def shown(self) -> str:
        """The line as a viewer sees it in SRT and burned-in captions."""
        return f"{self.speaker}: {self.text}" if self.labelled else self.text


class Cue(BaseModel):
    start_s: float
    end_s: float
    lines: list[CueLine]

    @property
    def speaker(self) -> str:
        return self.lines[0].speaker

    @property
    def text(self) -> str:
        """The words of the cue (without names or line breaks)."""
        return " ".join(line.text for line in self.lines)

    @property
    def first_of_line(self) -> bool:
        return self.lines[0].labelled

    @property
    def chars(self) -> int:
        """Characters a viewer reads, the name included and line breaks not."""
        return sum(len(line.shown) for line in self.lines)

    @property
    def cps(self) -> float:
        return self.chars / max(self.end_s - self.start_s, 1e-6)


class CaptionStats(BaseModel):
    """How readable the captions are, against the targets in this module (for the manifest and report)."""

    cues: int
    cps_max: float
    cps_median: float
    cues_over_cps: int
    share_over_cps: float
    cues_over_cps_unavoidable: int | None = Field(default=None, description="of those, how many the audio forces: words spoken too fast to be read at the limit before the next cue (None: lines not given)")
    max_line_chars: int
    max_lines: int
    min_duration_s: float
    median_duration_s: float
    cues_under_min_s: int
    overlaps: int
    max_cps_target: float = MAX_CPS
    max_line_chars_target: int = MAX_LINE_CHARS
    max_lines_target: int = MAX_LINES
    min_duration_target_s: float = MIN_CUE_S

    @computed_field
    @property
    def failures(self) -> list[str]:
        """What misses a target, in words; empty when every target is met."""
        found = []
        avoidable = self.cues_over_cps - (self.cues_over_cps_unavoidable or 0)
        if avoidable:
            found.append(f"{avoidable} of {self.cues} cues read faster than {self.max_cps_target:g} characters/s where the audio allows (max {self.cps_max:.1f})")
        if self.max_line_chars > self.max_line_chars_target:
            found.append(f"a line of {self.max_line_chars} characters (limit {self.max_line_chars_target})")
        if self.max_lines > self.max_lines_target:
            found.append(f"a cue of {self.max_lines} lines (limit {self.max_lines_target})")
        if self.cues_under_min_s:
            found.append(f"{self.cues_under_min_s} cues shorter than {self.min_duration_target_s:g} s (min {self.min_duration_s:.2f} s)")
        if self.overlaps:
            found.append(f"{self.overlaps} cues overlap the next")
        return found


def caption_checks(stats: CaptionStats, cues: Sequence[Cue]) -> list[QualityCheck]:
    """The caption targets as quality checks: reading speed, line length, lines per cue, shortest cue.

    Reading speed passes where every cue faster than :data:`MAX_CPS` stays up until the next cue starts
    (or the episode ends): it could not be read slower. How many of them the audio forces (words spoken
    too fast for any cut) is in the detail.
    """
    fast = [index for index, cue in enumerate(cues) if cue.cps > MAX_CPS + 1e-9]
    cut_short = [index for index in fast if index + 1 < len(cues) and cues[index + 1].start_s - cues[index].end_s > _FILE_ROUNDING_S]
    forced = stats.cues_over_cps_unavoidable
    speed_detail = f"{len(fast)} of {stats.cues} cues over {MAX_CPS:g} chars/s, each held to the next cue; fastest {stats.cps_max:.1f}, median {stats.cps_median:.1f}"
    if forced is not None:
        speed_detail += f"; the audio forces at least {forced}"
    return [
        at_most("fast cues cut short", len(cut_short), 0, unit="cues", scope="captions", detail=speed_detail),
        at_most("longest caption line", stats.max_line_chars, stats.max_line_chars_target, unit="chars", scope="captions"),
        at_most("lines in a cue", stats.max_lines, stats.max_lines_target, scope="captions"),
        at_least("shortest cue", stats.min_duration_s, stats.min_duration_target_s, unit="s", scope="captions", detail=f"{stats.cues} cues"),
    ]


# --- building cues -----------------------------------------------------------------------------------


def build_cues(lines: list[TimedLine], end_s: float | None = None, names: Sequence[str] | None = None) -> list[Cue]:
    """Cues for the episode's lines (in time order); ``end_s``: when the last cue must be gone at the latest.

    With ``names`` (``names[host]``) each line's first cue is labelled with its speaker's name; without,
    nothing is labelled (the burned-in picture tells hosts apart by colour).
    """
    cues: list[Cue] = []
    limit = 0.0
    for host, speaker, words, limit in _timed_lines(lines, end_s, names):
        cues += split_line(speaker, words, limit, host=host)
    return merge_exchanges(cues, limit)


def _timed_lines(lines: Sequence[TimedLine], end_s: float | None = None, names: Sequence[str] | None = None) -> list[tuple[int, str, list[WordTiming], float]]:
    """(host, name shown or "", timed words, until when its cues may stay: the next line's first word) for
    each line that has words; the last line's cues may stay :data:`LAST_CUE_HOLD_S` or until ``end_s``."""
    timed = [(line.host, [word for word in (line.words or spread_words(line)) if word.text.strip()]) for line in lines]
    timed = [(host, words) for host, words in timed if words]
    result = []
    for position, (host, words) in enumerate(timed):
        if position + 1 < len(timed):
            limit = timed[position + 1][1][0].start_s
        else:
            limit = words[-1].end_s + LAST_CUE_HOLD_S if end_s is None else max(end_s, words[-1].end_s)
        result.append((host, names[host] if names else "", words, limit))
    return result


def spread_words(line: TimedLine) -> list[WordTiming]:
    """Without word timing (an engine that gives none), words share the line by the length of what is said."""
    timed = time_written_words(line.text, [(line.start_s, line.end_s)])
    return [WordTiming(text=word, start_s=start, end_s=end) for word, start, end in timed]


def split_line(speaker: str, words: Sequence[WordTiming], limit_s: float, *, host: int = 0) -> list[Cue]:
    """A host's line cut into cues at word boundaries, the cheapest way by :func:`cue_cost`.

    ``limit_s`` is when the next cue starts (the next line's first word): the last cue may be held until
    then, never past it.
    """
    return [_cue(speaker, host, words, start, end, limit_s) for start, end in _best_cuts(speaker, words, limit_s)[1]]


def fewest_faulty_cues(speaker: str, words: Sequence[WordTiming], limit_s: float) -> int:
    """The fewest cues too fast or too short that any cut of the line into cues must have (0: the audio
    allows every cue to meet the targets)."""
    return int(_best_cuts(speaker, words, limit_s)[0][0])


def _best_cuts(speaker: str, words: Sequence[WordTiming], limit_s: float) -> tuple[tuple[float, float], list[tuple[int, int]]]:
    """The cheapest cut by :func:`cue_cost` (costs compared as pairs: faults first) and its cost."""
    count = len(words)
    worst = (float("inf"), float("inf"))
    best: list[tuple[tuple[float, float], int]] = [((0.0, 0.0), -1)] + [(worst, -1)] * count
    for end in range(1, count + 1):
        for start in range(end - 1, -1, -1):
            if end - start > 1 and sum(len(word.text) + 1 for word in words[start:end]) > MAX_LINES * (MAX_LINE_CHARS + 1):
                break
            faults, cost = cue_cost(speaker, words, start, end, limit_s)
            total = (best[start][0][0] + faults, best[start][0][1] + cost)
            if total < best[end][0]:
                best[end] = (total, start)
    bounds, end = [], count
    while end > 0:
        start = best[end][1]
        bounds.append((start, end))
        end = start
    return best[count][0], list(reversed(bounds))


def cue_cost(speaker: str, words: Sequence[WordTiming], start: int, end: int, limit_s: float) -> tuple[int, float]:
    """What showing ``words[start:end]`` as one cue costs: (faults, cost); infinite when it does not fit.

    Faults come first: a cue that reads faster than :data:`MAX_CPS` or lasts less than
    :data:`MIN_CUE_S` is one fault, so a cut whose cues all meet both always wins when the audio allows
    one. Then the cost: 30 per character/s over the limit and 300 per second missing (how badly), 2
    for a cut after a comma, 6 inside a clause and 12 after a weak word ("the", "a", "and"); 3 per
    cue; 10 per second of speech beyond :data:`MAX_CUE_S`. A single word too long for a line is shown
    alone, at a cost of 50.
    """
    shown = _shown(speaker, words, start, end)
    if shown is None:
        return (1 << 30, float("inf"))
    chars = sum(len(line) for line in shown)
    next_start = words[end].start_s if end < len(words) else limit_s
    first, last_end = words[start].start_s, words[end - 1].end_s
    duration = cue_end(first, last_end, chars, next_start) - first
    excess = max(0.0, chars / max(duration, 1e-3) - MAX_CPS)
    missing = max(0.0, MIN_CUE_S - duration)
    cost = 3.0 if len(shown) <= MAX_LINES and max(map(len, shown)) <= MAX_LINE_CHARS else 50.0
    cost += 30.0 * excess + 300.0 * missing + 10.0 * max(0.0, last_end - first - MAX_CUE_S)
    if end < len(words):
        cost += break_cost(words[end - 1].text)
    return (1 if excess > 1e-9 or missing > 1e-9 else 0), cost


def break_cost(last_word: str) -> float:
    """How badly a cue reads when it ends with ``last_word`` and the line goes on in the next cue."""
    if _SENTENCE_END.search(last_word):
        return 0.0
    if _CLAUSE_END.search(last_word):
        return 2.0
    if last_word.lower().strip("\"'“”‘’()") in _WEAK_ENDINGS:
        return 12.0
    return 6.0


def cue_end(start_s: float, last_word_end_s: float, chars: int, next_start_s: float) -> float:
    """When a cue stops: its last word's end, held for :data:`MIN_CUE_S` and for reading at
    :data:`MAX_CPS`, but never past the next cue's start (``next_start_s``)."""
    needed = start_s + max(MIN_CUE_S, chars / MAX_CPS) + ROUNDING_MARGIN_S
    return min(max(last_word_end_s, needed), max(next_start_s, start_s))


def wrap_lines(words: Sequence[str], label: str | None = None) -> list[str] | None:
    """``words`` as shown on one or two lines of at most :data:`MAX_LINE_CHARS`; None if they do not fit.

    ``label`` (a speaker's name) is shown before the first line as "NAME: ". One line when it fits; else
    the cut that reads best: after a sentence or clause, not after a weak word like "the", lines close
    in length (the lower one may be longer).
    """
    prefix = f"{label}: " if label else ""
    whole = prefix + " ".join(words)
    if len(whole) <= MAX_LINE_CHARS:
        return [whole]
    best: tuple[float, list[str]] | None = None
    for cut in range(1, len(words)):
        top, bottom = prefix + " ".join(words[:cut]), " ".join(words[cut:])
        if len(top) > MAX_LINE_CHARS or len(bottom) > MAX_LINE_CHARS:
            continue
        score = abs(len(top) - len(bottom)) + (2 if len(top) > len(bottom) else 0) + 4 * break_cost(words[cut - 1])
        if best is None or score < best[0]:
            best = (score, [top, bottom])
    return best[1] if best else None


def _shown(speaker: str, words: Sequence[WordTiming], start: int, end: int) -> list[str] | None:
    """The lines ``words[start:end]`` are shown on (the name before the line's first cue), if they fit;
    a lone word that does not fit is shown as it is."""
    texts = [word.text for word in words[start:end]]
    label = speaker if start == 0 and speaker else None
    shown = wrap_lines(texts, label=label)
    if shown is None and len(texts) == 1:
        return [(f"{label}: " if label else "") + texts[0]]
    return shown


def _cue(speaker: str, host: int, words: Sequence[WordTiming], start: int, end: int, limit_s: float) -> Cue:
    shown = _shown(speaker, words, start, end) or []
    labelled = start == 0 and bool(speaker)
    lines = [CueLine(host=host, speaker=speaker, text=text.removeprefix(f"{speaker}: ") if labelled and row == 0 else text, labelled=labelled and row == 0) for row, text in enumerate(shown)]
    next_start = words[end].start_s if end < len(words) else limit_s
    first = words[start].start_s
    return Cue(start_s=first, end_s=cue_end(first, words[end - 1].end_s, sum(len(text) for text in shown), next_start), lines=lines)


def merge_exchanges(cues: list[Cue], last_limit_s: float | None = None) -> list[Cue]:
    """Join a cue that is too short or too fast with the next one when each fits on one line.

    A quick reply ("Yes.") between two hosts cannot be held long enough without running into the other
    host's speech; shown as a two-line cue with its neighbour, one host per line, it is on screen for both.
    The joined cue is held like any other (:func:`cue_end`, up to the cue after it, or ``last_limit_s``)
    and kept only if it reads better than the two did (fewer rule breaks).
    """
    merged: list[Cue] = []
    for number, cue in enumerate(cues):
        if merged and _mergeable(merged[-1], cue):
            previous = merged[-1]
            second = [line.model_copy(update={"labelled": line.labelled and line.host != previous.lines[-1].host}) for line in cue.lines]
            limit = cues[number + 1].start_s if number + 1 < len(cues) else max(cue.end_s, last_limit_s or cue.end_s)
            lines = [*previous.lines, *second]
            end = cue_end(previous.start_s, cue.end_s, sum(len(line.shown) for line in lines), limit)
            joined = Cue(start_s=previous.start_s, end_s=end, lines=lines)
            if _faults([joined]) < _faults([previous, cue]):
                merged[-1] = joined
                continue
        merged.append(cue)
    return merged


def _mergeable(first: Cue, second: Cue) -> bool:
    if len(first.lines) + len(second.lines) > MAX_LINES:
        return False
    if any(len(line.shown) > MAX_LINE_CHARS for line in [*first.lines, *second.lines]):
        return False
    return _faults([first]) > 0 or _faults([second]) > 0


def _faults(cues: Sequence[Cue]) -> float:
    """Rule breaks in ``cues``: reading speed over the limit (per character/s) and time missing below the
    minimum (per tenth of a second)."""
    return sum(max(0.0, cue.cps - MAX_CPS) + 10 * max(0.0, MIN_CUE_S - (cue.end_s - cue.start_s)) for cue in cues)


# --- statistics --------------------------------------------------------------------------------------


def caption_stats(cues: Sequence[Cue], lines: Sequence[TimedLine] | None = None, names: Sequence[str] | None = None) -> CaptionStats:
    """Reading speed, line lengths and durations of ``cues`` (as written by :func:`to_srt`).

    With the episode's ``lines`` (and ``names``, as the cues were built from), cues over the reading-speed limit that
    the audio forces are told apart: in each line, as many as the fewest faulty cues any cut of that
    line must have (:func:`fewest_faulty_cues`), because its words are spoken too fast to be read at
    :data:`MAX_CPS` in the time before the next cue.
    """
    if not cues:
        return CaptionStats(cues=0, cps_max=0, cps_median=0, cues_over_cps=0, share_over_cps=0, max_line_chars=0, max_lines=0, min_duration_s=0, median_duration_s=0, cues_under_min_s=0, overlaps=0)
    speeds = [cue.cps for cue in cues]
    durations = [cue.end_s - cue.start_s for cue in cues]
    over = [cue for cue, speed in zip(cues, speeds) if speed > MAX_CPS + 1e-9]
    unavoidable = None
    if lines is not None:
        unavoidable = 0
        for _, speaker, words, limit in _timed_lines(lines, names=names):
            in_line = sum(1 for cue in over if words[0].start_s - _FILE_ROUNDING_S <= cue.start_s < limit - _FILE_ROUNDING_S)
            unavoidable += min(in_line, fewest_faulty_cues(speaker, words, limit)) if in_line else 0
    return CaptionStats(
        cues=len(cues),
        cps_max=round(max(speeds), 2),
        cps_median=round(statistics.median(speeds), 2),
        cues_over_cps=len(over),
        share_over_cps=round(len(over) / len(cues), 3),
        cues_over_cps_unavoidable=unavoidable,
        max_line_chars=max(len(line.shown) for cue in cues for line in cue.lines),
        max_lines=max(len(cue.lines) for cue in cues),
        min_duration_s=round(min(durations), 3),
        median_duration_s=round(statistics.median(durations), 3),
        cues_under_min_s=sum(1 for duration in durations if duration < MIN_CUE_S - 1e-9),
        overlaps=sum(1 for first, second in zip(cues, cues[1:]) if first.end_s > second.start_s + 1e-9),
    )


_SRT_TIMING = re.compile(r"^(\d+):(\d\d):(\d\d)[,.](\d{3})\s+-->\s+(\d+):(\d\d):(\d\d)[,.](\d{3})")


def parse_srt(text: str) -> list[Cue]:
    """Cues from an SRT file, each line as shown (names are not told apart from the words)."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        rows = block.split("\n")
        timing_row = next((index for index, row in enumerate(rows) if _SRT_TIMING.match(row)), None)
        if timing_row is None:
            continue
        h1, m1, s1, f1, h2, m2, s2, f2 = (int(part) for part in _SRT_TIMING.match(rows[timing_row]).groups())
        shown = [row for row in rows[timing_row + 1 :] if row.strip()]
        cues.append(Cue(start_s=h1 * 3600 + m1 * 60 + s1 + f1 / 1000, end_s=h2 * 3600 + m2 * 60 + s2 + f2 / 1000, lines=[CueLine(speaker="", text=row) for row in shown]))
    return cues


# --- writers -----------------------------------------------------------------------------------------


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt_text(text: str) -> str:
    """``text`` made inert for SRT players, which read HTML-like tags and ASS override blocks in it.

    "-->" would read as a timing line (→); "{\\pos(…)}" and other braces become parentheses; a tag such
    as "<i>" gets angle quotes (‹i›); a backslash before n, N or h (a line break or hard space to libass)
    becomes a reverse-solidus look-alike (∖).
    """
    text = text.replace("-->", "→").replace("{", "(").replace("}", ")")
    text = re.sub(r"<(/?[A-Za-z][^<>]*)>", r"‹\1›", text)
    return re.sub(r"\\(?=[nNh])", "∖", text)


def to_srt(cues: list[Cue]) -> str:
    blocks = []
    for number, cue in enumerate(cues, start=1):
        text = "\n".join(srt_text(line.shown) for line in cue.lines)
        blocks.append(f"{number}\n{_clock(cue.start_s, ',')} --> {_clock(_after(cue), ',')}\n{text}\n")
    return "\n".join(blocks)


def _after(cue: Cue) -> float:
    """The end written for a cue: at least one millisecond after its start, as every format requires."""
    return max(cue.end_s, cue.start_s + 0.001)


def vtt_text(text: str) -> str:
    """``text`` escaped for a WebVTT cue ("&", "<", ">" as entities; "-->" cannot then occur)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: list[Cue]) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues:
        rows = []
        for index, line in enumerate(cue.lines):
            voice = f"<v {vtt_text(line.speaker)}>" if index == 0 or line.speaker != cue.lines[index - 1].speaker else ""
            close = "</v>" if index + 1 < len(cue.lines) and cue.lines[index + 1].speaker != line.speaker else ""
            rows.append(f"{voice}{vtt_text(line.text)}{close}")
        blocks.append(f"{_clock(cue.start_s, '.')} --> {_clock(_after(cue), '.')}\n" + "\n".join(rows) + "\n")
    return "\n".join(blocks)


def _ass_clock(seconds: float) -> str:
    centis = int(round(seconds * 100))
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6000)
    secs, centis = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"


def ass_text(text: str) -> str:
    """``text`` made inert for libass: braces would open override blocks, backslashes start escapes."""
    return text.replace("\\", "/").replace("{", "(").replace("}", ")")


def caption_font_size(width: int, height: int) -> int:
    """A font size at which a line of :data:`MAX_LINE_CHARS` fits between the side margins.

    5.5 % of the height, smaller on narrow pictures; a DejaVu Sans character is at most about 0.62 of
    the size wide on average over text.
    """
    usable = width - 2 * (width // 12)
    return max(8, min(round(height * 0.055), int(usable / (MAX_LINE_CHARS * 0.62))))


def to_ass(cues: list[Cue], width: int, height: int, font: str = "DejaVu Sans") -> str:
    """An ASS script for burning captions in: bottom centre, outlined, each host's lines in their colour
    (and their name, where the cues carry names)."""
    size = caption_font_size(width, height)
    header = (
        "[Script Info]\nScriptType: v4.00+\nWrapStyle: 0\nScaledBorderAndShadow: yes\n"
        f"PlayResX: {width}\nPlayResY: {height}\n\n"
        "[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
        f"Style: Caption,{font},{size},&H00FFFFFF,&H00FFFFFF,&H00101010,&H80000000,0,0,0,0,100,100,0,0,1,{max(2, size // 14)},1,2,"
        f"{width // 12},{width // 12},{round(height * 0.07)},1\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
    )
    events = []
    for cue in cues:
        rows = []
        for line in cue.lines:
            colour = SPEAKER_COLOURS[line.host % len(SPEAKER_COLOURS)]
            label = f"{ass_text(line.speaker)}: " if line.labelled else ""
            rows.append(f"{{\\c{colour}&}}{label}{ass_text(line.text)}")
        name = f"host{cue.lines[0].host + 1}"
        text = "\\N".join(rows)
        events.append(f"Dialogue: 0,{_ass_clock(cue.start_s)},{_ass_clock(_after(cue))},Caption,{name},0,0,0,,{text}")
    return header + "\n".join(events) + "\n"
