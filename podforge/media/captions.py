"""Subtitles from the TTS timing: cues of a readable size, written as SRT, WebVTT and ASS (for burn-in)."""

from __future__ import annotations

import re

from pydantic import BaseModel

from podforge.timing import TimedLine, WordTiming

MAX_CUE_CHARS = 42
MAX_CUE_SECONDS = 6.0
SPEAKER_COLOURS = ("&H00FFD27F", "&H007FE0FF", "&H00A0FFA0", "&H00FFA0FF")  # ASS is &HAABBGGRR


class Cue(BaseModel):
    start_s: float
    end_s: float
    host: int
    text: str
    first_of_line: bool


def build_cues(lines: list[TimedLine]) -> list[Cue]:
    """Split each line's words into cues of at most ``MAX_CUE_CHARS`` and ``MAX_CUE_SECONDS``."""
    cues: list[Cue] = []
    for line in lines:
        for position, words in enumerate(_group_words(line.words or _even_words(line))):
            cues.append(
                Cue(
                    start_s=words[0].start_s,
                    end_s=max(words[-1].end_s, words[0].start_s + 0.3),
                    host=line.host,
                    text=" ".join(w.text for w in words),
                    first_of_line=position == 0,
                )
            )
    return cues


def _group_words(words: list[WordTiming]) -> list[list[WordTiming]]:
    """Greedy grouping; a sentence end closes a group once it is half full."""
    groups: list[list[WordTiming]] = []
    group: list[WordTiming] = []
    for word in words:
        candidate = " ".join(w.text for w in [*group, word])
        if group and (len(candidate) > MAX_CUE_CHARS or word.end_s - group[0].start_s > MAX_CUE_SECONDS):
            groups.append(group)
            group = []
        group.append(word)
        if re.search(r"[.!?]$", word.text) and len(" ".join(w.text for w in group)) > MAX_CUE_CHARS // 2:
            groups.append(group)
            group = []
    if group:
        groups.append(group)
    return groups


def _even_words(line: TimedLine) -> list[WordTiming]:
    """Without word timing (an engine that gives none), spread the words evenly over the line."""
    words = line.text.split()
    step = (line.end_s - line.start_s) / max(len(words), 1)
    return [WordTiming(text=w, start_s=line.start_s + i * step, end_s=line.start_s + (i + 1) * step) for i, w in enumerate(words)]


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(cues: list[Cue], names: list[str]) -> str:
    """SubRip; each line's first cue names its speaker (``names[host]``)."""
    blocks = []
    for number, cue in enumerate(cues, start=1):
        text = f"{names[cue.host]}: {cue.text}" if cue.first_of_line else cue.text
        blocks.append(f"{number}\n{_clock(cue.start_s, ',')} --> {_clock(cue.end_s, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(cues: list[Cue], names: list[str]) -> str:
    """WebVTT with a voice tag (``<v NAME>``) per cue."""
    blocks = ["WEBVTT\n"]
    for cue in cues:
        text = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{_clock(cue.start_s, '.')} --> {_clock(cue.end_s, '.')}\n<v {names[cue.host]}>{text}\n")
    return "\n".join(blocks)


def _ass_clock(seconds: float) -> str:
    centis = int(round(seconds * 100))
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6000)
    secs, centis = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"


def to_ass(cues: list[Cue], width: int, height: int, font: str = "DejaVu Sans") -> str:
    """An ASS script for burning captions in: bottom centre, outlined, each host's words in their colour.

    Names are not burned in (the sidecar SRT/VTT carry them), so renaming a host never re-renders the video.
    """
    size = round(height * 0.055)
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
        colour = SPEAKER_COLOURS[cue.host % len(SPEAKER_COLOURS)]
        text = cue.text.replace("\\", "/").replace("{", "(").replace("}", ")")
        events.append(f"Dialogue: 0,{_ass_clock(cue.start_s)},{_ass_clock(cue.end_s)},Caption,host{cue.host + 1},0,0,0,,{{\\c{colour}&}}{text}")
    return header + "\n".join(events) + "\n"
