"""Cues from word timing, and their SRT, WebVTT and ASS forms."""

from __future__ import annotations

import re

from podforge.media.captions import MAX_CUE_CHARS, build_cues, to_ass, to_srt, to_vtt
from podforge.timing import TimedLine, WordTiming

NAMES = ["ALEX", "SAM"]


def timed_line(text: str, start: float, host: int = 0, per_word: float = 0.4, words: bool = True) -> TimedLine:
    tokens = text.split()
    timings = [WordTiming(text=w, start_s=start + i * per_word, end_s=start + (i + 1) * per_word - 0.05) for i, w in enumerate(tokens)]
    return TimedLine(index=0, host=host, text=text, chapter=0, start_s=start, end_s=start + len(tokens) * per_word, words=timings if words else [], phonemes=[])


def test_long_lines_split_into_readable_cues_that_follow_the_words():
    line = timed_line("This sentence is long enough that it cannot fit on one caption line at all. Then another one follows.", 4.0)
    cues = build_cues([line])
    assert len(cues) >= 3
    assert all(len(cue.text) <= MAX_CUE_CHARS for cue in cues)
    assert " ".join(cue.text for cue in cues) == line.text
    assert cues[0].start_s == 4.0 and cues[0].first_of_line and not cues[1].first_of_line
    assert all(a.end_s <= b.start_s for a, b in zip(cues, cues[1:]))
    assert any(cue.text.endswith("all.") for cue in cues), "a sentence end closes a cue"


def test_lines_without_word_timing_are_spread_evenly():
    line = timed_line("one two three four", 10.0, words=False)
    (cue,) = build_cues([line])
    assert (cue.start_s, round(cue.end_s, 3)) == (10.0, 11.6)


def test_srt_vtt_and_ass_formats():
    cues = build_cues([timed_line("Hello <world> & friends.", 1.0), timed_line("{Braces} here.", 3500.0, host=1)])
    srt = to_srt(cues, NAMES)
    assert srt.startswith("1\n00:00:01,000 --> 00:00:02,550\nALEX: Hello <world> & friends.\n")
    assert "2\n00:58:20,000 --> " in srt
    vtt = to_vtt(cues, NAMES)
    assert vtt.startswith("WEBVTT\n") and "<v ALEX>Hello &lt;world&gt; &amp; friends." in vtt
    assert re.search(r"00:58:20\.000 --> 00:58:20\.\d{3}\n<v SAM>", vtt)
    ass = to_ass(cues, 1280, 720)
    assert "PlayResX: 1280" in ass and "PlayResY: 720" in ass
    events = [line for line in ass.splitlines() if line.startswith("Dialogue:")]
    assert len(events) == 2 and events[1].startswith("Dialogue: 0,0:58:20.00,")
    assert "(Braces)" in events[1] and "{Braces}" not in events[1], "braces would start an ASS override block"
    assert "ALEX" not in ass and "SAM" not in ass, "names are not burned in: renaming a host must not change the picture"
    assert events[0].endswith("{\\c&H00FFD27F&}Hello <world> & friends.") and "{\\c&H007FE0FF&}" in events[1], "each host has a colour"
