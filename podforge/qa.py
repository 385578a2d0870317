"""Speech QA: an offline recogniser listens to every synthesised line and scores it against what was meant.

Each line's word error rate (WER) is measured against its *spoken* text (the script text after
:func:`podforge.textnorm.normalize_text`), after both sides are put through the same scoring normaliser
(:func:`wer_words`): lower case, no punctuation, numbers written out ("12%" heard is "twelve percent"),
hyphenated words split, letters spelled out joined ("L-U-F-S" is "lufs"), British "-ise"/"-our" spellings
folded onto American ones; two words that the other side writes as one ("re-run", "rerun") count as one.
A line whose WER is above ``qa.max_wer`` is synthesised again (a *take*; stochastic engines draw new noise for each take and
speak a little slower), up to ``qa.takes`` takes; the take with the lowest WER is kept. A line that stays
above the threshold is *flagged*: the report names its line number, speaker, text and what was heard.

The recogniser's word timings also time the captions of engines that give no alignment of their own
(an alignment without phonemes, e.g. Coqui XTTS's energy estimate): :func:`time_words_from_heard` maps the
heard words onto the written ones, and the first word starts no earlier than the clip's speech onset.

WER is computed here (a word-level Levenshtein alignment, :func:`align_words`) rather than with
``jiwer``: the normaliser has to be ours anyway (numbers through Podforge's own text normaliser), the
alignment is reused to move the recogniser's timings onto the script's words, and the lines are short.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from podforge.config import QaSettings
from podforge.engines.base import AsrResult, SpeechResult
from podforge.media.audio import read_mono
from podforge.media.quality import QualityCheck, at_most
from podforge.textnorm import normalize_text
from podforge.timing import WordTiming

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_BRITISH_ISE = re.compile(r"(?<=\w{3})is(e|ed|es|er|ers|ing|ation|ations)$")
_BRITISH_OUR = re.compile(r"(?<=\w{2})our(s|ed|ing|ite|ites|ful|fully)?$")
_SPELLED = re.compile(r"\b[A-Z](?:-[A-Z])+\b")
_SAME_WORD = {"ok": "okay", "alright": "all right", "mr": "mister", "mrs": "missus", "dr": "doctor", "vs": "versus"}


# --- scoring ----------------------------------------------------------------------------------------


def wer_words(text: str, language: str = "en") -> list[str]:
    """The words of ``text`` as they are compared: spoken form, lower case, no punctuation, one spelling."""
    text = _SPELLED.sub(lambda match: match.group(0).replace("-", ""), text)  # "L-U-F-S" -> "LUFS" (not "16 L" litres)
    spoken = normalize_text(text, language).lower().replace("’", "'").replace("‘", "'")
    words: list[str] = []
    for word in _WORD.findall(spoken):
        word = _SAME_WORD.get(word, word)
        if language.startswith("en"):
            word = _BRITISH_OUR.sub(r"or\1", _BRITISH_ISE.sub(r"iz\1", word))
        words.extend(word.split())
    return _join_spelled_letters(words)


def _join_spelled_letters(words: list[str]) -> list[str]:
    """"l u f s" (an acronym spelled out, or heard as "L-U-F-S") is one word: "lufs"."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        joined.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        if word:
            joined.append(word)
    return joined


def _join_compounds(words: list[str], other: list[str]) -> list[str]:
    """Two adjacent words that the other side writes as one ("re run" / "rerun") become that one word."""
    known = set(other)
    joined: list[str] = []
    position = 0
    while position < len(words):
        pair = "".join(words[position : position + 2])
        if position + 1 < len(words) and pair in known and pair not in words:
            joined.append(pair)
            position += 2
        else:
            joined.append(words[position])
            position += 1
    return joined


def align_words(reference: list[str], heard: list[str]) -> list[tuple[int | None, int | None]]:
    """The cheapest edit path between two word lists, as (reference index, heard index) pairs.

    ``(i, j)``: a match or a substitution; ``(i, None)``: a deletion; ``(None, j)``: an insertion.
    """
    rows, cols = len(reference) + 1, len(heard) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            substitute = cost[i - 1][j - 1] + (reference[i - 1] != heard[j - 1])
            cost[i][j] = min(substitute, cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    path: list[tuple[int | None, int | None]] = []
    i, j = len(reference), len(heard)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != heard[j - 1]):
            path.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            path.append((i - 1, None))
            i -= 1
        else:
            path.append((None, j - 1))
            j -= 1
    return path[::-1]


class Score(BaseModel):
    """How one take was heard."""

    errors: int = Field(description="substitutions + deletions + insertions")
    words: int = Field(description="words in the spoken reference")
    heard: str

    @property
    def wer(self) -> float:
        return self.errors / max(self.words, 1)


def score(spoken: str, heard: str, language: str = "en") -> Score:
    written, hypothesis = wer_words(spoken, language), wer_words(heard, language)
    reference, hypothesis = _join_compounds(written, hypothesis), _join_compounds(hypothesis, written)
    errors = sum(1 for i, j in align_words(reference, hypothesis) if i is None or j is None or reference[i] != hypothesis[j])
    return Score(errors=errors, words=len(written), heard=heard.strip())


# --- caption timing from the recogniser --------------------------------------------------------------


def time_words_from_heard(text: str, heard: list[WordTiming], language: str = "en") -> list[WordTiming]:
    """Time each written word of ``text`` (split on white space, as captions are) from the heard words.

    Written and heard words are reduced to scoring words, aligned, and each written word takes the span
    of the heard words its scoring words matched or replaced. Written words that matched nothing share
    the gap between their timed neighbours. Empty when nothing was heard.
    """
    written = text.split()
    if not written or not heard:
        return []
    reference, owner_written = _owned_words(written, language)
    hypothesis, owner_heard = _owned_words([w.text for w in heard], language)
    spans: list[list[float] | None] = [None] * len(written)
    for i, j in align_words(reference, hypothesis):
        if i is None or j is None:
            continue
        timing = heard[owner_heard[j]]
        span = spans[owner_written[i]]
        if span is None:
            spans[owner_written[i]] = [timing.start_s, timing.end_s]
        else:
            span[0], span[1] = min(span[0], timing.start_s), max(span[1], timing.end_s)
    return _fill_gaps(written, spans, heard[0].start_s, heard[-1].end_s)


def speech_onset(wav: Path, frame_s: float = 0.01, within_db: float = 35.0) -> float:
    """Seconds to the first 10 ms frame within ``within_db`` of the clip's loudest frame."""
    rate = 16000
    audio = read_mono(wav, rate)
    frame = int(rate * frame_s)
    count = len(audio) // frame
    if count == 0:
        return 0.0
    rms = np.sqrt(np.mean(audio[: count * frame].reshape(count, frame).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms >= max(rms.max() * 10 ** (-within_db / 20), 1e-5))
    return float(loud[0] * frame_s) if loud.size else 0.0


def _owned_words(pieces: list[str], language: str) -> tuple[list[str], list[int]]:
    words: list[str] = []
    owners: list[int] = []
    for position, piece in enumerate(pieces):
        for word in wer_words(piece, language):
            words.append(word)
            owners.append(position)
    return words, owners


def _fill_gaps(written: list[str], spans: list[list[float] | None], first_s: float, last_s: float) -> list[WordTiming]:
    """Written words that took the same heard words share that span; untimed ones share the gap to the next."""
    bounds: list[tuple[float, float] | None] = [None] * len(written)
    position = 0
    while position < len(written):  # runs of overlapping spans (one heard "$30" for "thirty dollars,")
        if spans[position] is None:
            position += 1
            continue
        run_end, (start, end) = position + 1, spans[position]
        while run_end < len(written) and spans[run_end] is not None and spans[run_end][0] < end:
            end = max(end, spans[run_end][1])
            run_end += 1
        _share(bounds, written, position, run_end, start, end)
        position = run_end
    cursor = first_s
    position = 0
    while position < len(written):
        if bounds[position] is not None:
            cursor = max(cursor, bounds[position][1])
            position += 1
            continue
        run_end = position
        while run_end < len(written) and bounds[run_end] is None:
            run_end += 1
        until = max(bounds[run_end][0] if run_end < len(written) else last_s, cursor)
        _share(bounds, written, position, run_end, cursor, until)
        position = run_end
    timed: list[WordTiming] = []
    floor = first_s
    for word, (start, end) in zip(written, bounds):
        start = max(start, floor)
        timed.append(WordTiming(text=word, start_s=start, end_s=max(end, start)))
        floor = timed[-1].end_s
    return timed


def _share(bounds: list, written: list[str], first: int, stop: int, start_s: float, end_s: float) -> None:
    """Give ``written[first:stop]`` consecutive slices of ``start_s..end_s``, in proportion to their length."""
    weights = [len(word) + 1 for word in written[first:stop]]
    edges = [start_s + (end_s - start_s) * sum(weights[:k]) / sum(weights) for k in range(len(weights) + 1)]
    for offset in range(stop - first):
        bounds[first + offset] = (edges[offset], edges[offset + 1])


# --- the QA of one line ------------------------------------------------------------------------------


class Take(BaseModel):
    take: int
    wer: float
    errors: int
    heard: str


class LineCheck(BaseModel):
    """What QA found for one line: every take it heard, the one kept, and whether it stays flagged."""

    line: int = Field(description="the line's index in the script")
    host: int = Field(ge=0, description="the speaker's position in the cast (the plan names them)")
    text: str
    spoken: str = Field(description="the text as the engine was asked to say it")
    words: int = Field(description="scoring words in the spoken text")
    take: int = Field(description="the take kept (0: the first synthesis)")
    wer: float
    heard: str = Field(description="what the recogniser heard in the take kept")
    takes: list[Take]
    flagged: bool
    caption_timing: str = Field(description="'engine' (the engine's own alignment) or 'asr' (the recogniser's)")

    @property
    def retakes(self) -> int:
        return len(self.takes) - 1


class CheckedSpeech(SpeechResult):
    """The clip a line keeps after QA (its alignment timed by the recogniser where the engine gave none)."""

    check: LineCheck


def check_line(
    *,
    line: int,
    host: int,
    text: str,
    language: str,
    first: SpeechResult,
    synthesise: Callable[[int], SpeechResult],
    transcribe: Callable[[Path], AsrResult],
    settings: QaSettings,
    can_retake: bool,
) -> CheckedSpeech:
    """Score ``first``; while the best take is worse than ``settings.max_wer``, ``synthesise`` another.

    ``synthesise(take)`` makes take number ``take`` (cached by the caller under that number);
    ``can_retake`` is false for engines whose output does not change from take to take.
    """
    spoken = normalize_text(text, language)
    takes: list[tuple[Take, SpeechResult, AsrResult]] = []
    clip = first
    for number in range(settings.takes if can_retake else 1):
        if number:
            clip = synthesise(number)
        heard = transcribe(clip.wav)
        result = score(spoken, heard.text, language)
        takes.append((Take(take=number, wer=round(result.wer, 4), errors=result.errors, heard=result.heard), clip, heard))
        if result.wer <= settings.max_wer:
            break
    best, clip, heard = min(takes, key=lambda kept: (kept[0].errors, kept[0].take))
    caption_timing = "engine"
    if not clip.alignment.phonemes and (asr_words := time_words_from_heard(text, heard.words, language)):
        onset = speech_onset(clip.wav)  # Whisper tends to start a clip's first word at 0.0
        if asr_words[0].start_s < onset < asr_words[0].end_s:
            asr_words[0] = asr_words[0].model_copy(update={"start_s": onset})
        clip = clip.model_copy(update={"alignment": clip.alignment.model_copy(update={"words": asr_words})})
        caption_timing = "asr"
    check = LineCheck(
        line=line,
        host=host,
        text=text,
        spoken=spoken,
        words=len(wer_words(spoken, language)),
        take=best.take,
        wer=best.wer,
        heard=best.heard,
        takes=[take for take, _, _ in takes],
        flagged=best.wer > settings.max_wer,
        caption_timing=caption_timing,
    )
    return CheckedSpeech(**dict(clip), check=check)


# --- the episode's summary ---------------------------------------------------------------------------


class HostQa(BaseModel):
    speaker: str
    lines: int
    words: int
    wer: float = Field(description="word errors over reference words, the takes kept, all lines of the host")
    worst_wer: float
    retakes: int
    flagged: int


class FlaggedLine(BaseModel):
    line: int
    speaker: str
    text: str
    heard: str
    wer: float


class QaSummary(BaseModel):
    """WER per host with retakes, and the lines that stayed bad (for the manifest and the report)."""

    asr: str
    max_wer: float
    hosts: list[HostQa]
    flagged: list[FlaggedLine]


def summarise(checks: list[LineCheck], host_names: list[str], asr: str, max_wer: float) -> QaSummary:
    """The QA steps' checks (``LineCheck(**record.notes)``) as a table per host, names from the plan."""
    rows = []
    for host, speaker in enumerate(host_names):
        own = [check for check in checks if check.host == host]
        if not own:
            continue
        words = sum(check.words for check in own)
        errors = sum(next(take.errors for take in check.takes if take.take == check.take) for check in own)
        rows.append(
            HostQa(
                speaker=speaker,
                lines=len(own),
                words=words,
                wer=round(errors / max(words, 1), 4),
                worst_wer=max(check.wer for check in own),
                retakes=sum(check.retakes for check in own),
                flagged=sum(check.flagged for check in own),
            )
        )
    flagged = [FlaggedLine(line=c.line, speaker=host_names[c.host], text=c.text, heard=c.heard, wer=c.wer) for c in checks if c.flagged]
    return QaSummary(asr=asr, max_wer=max_wer, hosts=rows, flagged=flagged)


def qa_checks(summary: QaSummary) -> list[QualityCheck]:
    """Each host's word error rate (the takes kept) as a quality check against ``qa.max_wer``."""
    checks = []
    for host in summary.hosts:
        flagged = [f"spoken line {line.line + 1}, {line.text[:40]!r} heard as {line.heard[:40]!r}" for line in summary.flagged if line.speaker == host.speaker]
        detail = f"{host.lines} lines, {host.retakes} retakes, heard by {summary.asr}" + (f"; still bad: {'; '.join(flagged)}" if flagged else "")
        checks.append(at_most("speech word error rate", host.wer, summary.max_wer, scope=host.speaker, detail=detail))
    return checks
