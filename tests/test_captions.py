"""Caption cues from word timing: their form and timing rules, over tables and generated timelines, and
their SRT, WebVTT and ASS forms."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podforge.timing import TimedLine, WordTiming
from podforge.media.captions import (
    MAX_CPS,
    MAX_LINE_CHARS,
    MAX_LINES,
    MIN_CUE_S,
    Cue,
    CueLine,
    break_cost,
    build_cues,
    caption_stats,
    cue_end,
    fewest_faulty_cues,
    parse_srt,
    split_line,
    spread_words,
    to_ass,
    to_srt,
    to_vtt,
    wrap_lines,
)


NAMES = ["ALEX", "SAM", "JO"]  # the hosts, by their position in the cast


def timed_line(text: str, start: float, speaker: str = "ALEX", per_word: float = 0.4, words: bool = True, index: int = 0) -> TimedLine:
    tokens = text.split()
    timings = [WordTiming(text=w, start_s=start + i * per_word, end_s=start + (i + 1) * per_word - 0.05) for i, w in enumerate(tokens)]
    return TimedLine(index=index, host=NAMES.index(speaker), text=text, chapter=0, start_s=start, end_s=start + len(tokens) * per_word, words=timings if words else [], phonemes=[])


def cue_words(cues: list[Cue]) -> list[str]:
    return [word for cue in cues for word in cue.text.split()]


# --- table tests of the rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "label", "lines"),
    [
        ("Hello there.", None, ["Hello there."]),
        ("Hello there.", "ALEX", ["ALEX: Hello there."]),
        # two lines, cut after the clause rather than evenly
        ("Just a script, a few open source engines, and a lot of careful plumbing.", "SAM", ["SAM: Just a script, a few open source", "engines, and a lot of careful plumbing."]),
        ("Voices are generated in parallel with the music bed, then mixed.", None, ["Voices are generated in parallel", "with the music bed, then mixed."]),
        # the name counts: 42 characters with it do not fit on one line
        ("a b c d e f g h i j k l m n o p q r", "ALEXANDRA", ["ALEXANDRA: a b c d e f", "g h i j k l m n o p q r"]),
        ("x" * 30 + " " + "y" * 30 + " " + "z" * 30, None, None),
    ],
)
def test_wrap_lines(words: str, label: str | None, lines: list[str] | None) -> None:
    shown = wrap_lines(words.split(), label=label)
    assert shown == lines
    if shown:
        assert len(shown) <= MAX_LINES and all(len(line) <= MAX_LINE_CHARS for line in shown)


@pytest.mark.parametrize(("word", "cost"), [("plumbing.", 0), ("really?", 0), ('"Stop."', 0), ("studio,", 2), ("engines;", 2), ("laptop", 6), ("the", 12), ("and", 12)])
def test_break_cost_prefers_sentence_then_clause_ends(word: str, cost: float) -> None:
    assert break_cost(word) == cost


@pytest.mark.parametrize(
    ("start", "last_word_end", "chars", "next_start", "end"),
    [
        (10.0, 12.0, 20, 20.0, 12.0),  # read in time: ends with its last word
        (10.0, 10.5, 34, 20.0, 12.002),  # held for 34 characters at 17/s (plus rounding margin)
        (10.0, 10.3, 5, 20.0, 10.832),  # held for the minimum duration
        (10.0, 10.3, 34, 11.0, 11.0),  # never into the next cue
    ],
)
def test_cue_end(start: float, last_word_end: float, chars: int, next_start: float, end: float) -> None:
    assert cue_end(start, last_word_end, chars, next_start) == pytest.approx(end)


def test_a_mid_line_cue_starts_at_its_first_word_never_before() -> None:
    line = timed_line("This sentence is long enough that it cannot fit on one caption line at all. Then another one follows here with more words.", 4.0, per_word=0.3)
    cues = build_cues([line], names=NAMES)
    assert len(cues) >= 2 and cue_words(cues) == line.text.split()
    starts = {word.start_s for word in line.words}
    assert all(cue.start_s in starts for cue in cues)
    assert cues[0].first_of_line and not cues[1].first_of_line
    assert any(cue.text.endswith("all.") for cue in cues), "the sentence end closes a cue"


def test_a_lone_short_word_is_not_left_in_a_cue_of_its_own() -> None:
    """The demo had "plumbing." alone for 0.4 s: the line fits two lines, so it is one cue."""
    text = "Just a script, a few open source engines, and a lot of careful plumbing."
    line = timed_line(text, 0.0, speaker="SAM", per_word=0.3)
    (cue,) = build_cues([line, timed_line("Next.", 5.0, index=1)], names=NAMES)[:1]
    assert cue.text == text and len(cue.lines) == 2


def test_a_fast_line_is_held_into_the_gap_but_not_into_the_next_speaker() -> None:
    fast = timed_line("Cheap, if the GPU actually does the work.", 0.0, speaker="SAM", per_word=0.18)
    reply = timed_line("Here is the trap.", 3.0, speaker="ALEX", index=1)
    cues = build_cues([fast, reply], names=NAMES)
    assert cues[0].text == fast.text
    assert cues[0].end_s > fast.words[-1].end_s, "held past its last word to be readable"
    assert cues[0].cps <= MAX_CPS
    tight = timed_line("Here is the trap.", 1.5, speaker="ALEX", index=1)
    cues = build_cues([fast, tight], names=NAMES)
    assert cues[0].end_s == pytest.approx(1.5), "stops where the next host starts speaking"


def test_a_quick_reply_shares_a_cue_with_the_next_host() -> None:
    question = timed_line("Does it work?", 0.0, speaker="ALEX", per_word=0.3)
    answer = timed_line("Yes.", 1.2, speaker="SAM", per_word=0.3, index=1)
    follow_up = timed_line("Then show me how it was made, step by step.", 1.85, speaker="ALEX", per_word=0.3, index=2)
    cues = build_cues([question, answer, follow_up], names=NAMES)
    assert all(cue.end_s - cue.start_s >= MIN_CUE_S for cue in cues)
    joined = next(cue for cue in cues if "Yes." in cue.text)
    assert [line.shown for line in joined.lines][:2] in (["ALEX: Does it work?", "SAM: Yes."], ["SAM: Yes.", "ALEX: Then show me how it was made,"]) or len(joined.lines) == 2
    assert {line.speaker for line in joined.lines} == {"SAM", "ALEX"}
    assert cue_words(cues) == "Does it work? Yes. Then show me how it was made, step by step.".split()


def test_lines_without_word_timing_share_the_line_by_what_is_said() -> None:
    line = timed_line("It costs $1,500,000 today", 10.0, words=False)
    words = spread_words(line)
    assert [word.text for word in words] == line.text.split()
    assert words[0].start_s == 10.0 and words[-1].end_s == pytest.approx(line.end_s)
    durations = [word.end_s - word.start_s for word in words]
    assert durations[2] > 0.6 * (line.end_s - line.start_s), "'$1,500,000' is most of what is said"
    (cue,) = build_cues([line], names=NAMES)
    assert cue.start_s == 10.0 and cue.text == line.text


# --- properties over generated timelines -------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12).map(lambda w: w)
PUNCTUATION = st.sampled_from(["", "", "", "", ",", ".", "?"])


@st.composite
def timelines(draw) -> list[TimedLine]:
    lines, clock = [], draw(st.floats(0, 5))
    for index in range(draw(st.integers(1, 5))):
        count = draw(st.integers(1, 30))
        words = []
        for _ in range(count):
            text = draw(WORD) + draw(PUNCTUATION)
            length = draw(st.floats(0.05, 0.7))
            words.append(WordTiming(text=text, start_s=clock, end_s=clock + length))
            clock += length + draw(st.sampled_from([0.0, 0.0, 0.02, 0.1, 0.3]))
        speaker = draw(st.sampled_from(["ALEX", "SAM", "JO"]))
        lines.append(TimedLine(index=index, host=NAMES.index(speaker), text=" ".join(w.text for w in words), chapter=0, start_s=words[0].start_s, end_s=clock, words=words, phonemes=[]))
        clock += draw(st.sampled_from([0.0, 0.35, 0.35, 0.9, 2.0]))
    return lines


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(timelines())
def test_cue_rules_hold_on_any_timeline(lines: list[TimedLine]) -> None:
    cues = build_cues(lines, names=NAMES)
    words = [word for line in lines for word in line.words]
    line_starts = [line.words[0].start_s for line in lines]
    assert cue_words(cues) == [word.text for word in words], "every word once, in order"
    position = 0
    for number, cue in enumerate(cues):
        assert len(cue.lines) <= MAX_LINES and all(len(line.shown) <= MAX_LINE_CHARS for line in cue.lines)
        own = words[position : position + len(cue.text.split())]
        position += len(own)
        assert cue.start_s == own[0].start_s, "a cue starts at its first word"
        following = cues[number + 1].start_s if number + 1 < len(cues) else None
        later_lines = [start for start in line_starts if start > own[-1].start_s]
        if following is not None:
            assert cue.end_s <= following + 1e-9, "no overlap with the next cue"
        if later_lines:
            assert cue.end_s <= later_lines[0] + 1e-9, "never past the next line's speech"
        assert cue.end_s >= min(own[-1].end_s, following if following is not None else own[-1].end_s) - 1e-9, "up until its last word"
        pinned = following is not None and cue.end_s == pytest.approx(following)
        if cue.end_s - cue.start_s < MIN_CUE_S - 1e-9 or cue.cps > MAX_CPS + 1e-6:
            assert pinned or not later_lines, "a short or fast cue was held as long as the next cue allowed"


def faulty(cue: Cue) -> bool:
    return cue.cps > MAX_CPS + 1e-9 or cue.end_s - cue.start_s < MIN_CUE_S - 1e-9


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(timelines(), st.floats(0.0, 1.5))
def test_a_line_is_cut_with_the_fewest_faulty_cues_any_cut_could_have(lines: list[TimedLine], gap: float) -> None:
    """Checked against every cut of a short line (brute force), with the next line ``gap`` s after it."""
    words = lines[0].words[:9]
    limit = words[-1].end_s + gap
    cues = split_line("SAM", words, limit)
    fewest = None
    for mask in range(1 << (len(words) - 1)):
        cuts = [0] + [index + 1 for index in range(len(words) - 1) if mask >> index & 1] + [len(words)]
        shown = [wrap_lines([word.text for word in words[a:b]], label="SAM" if a == 0 else None) for a, b in zip(cuts, cuts[1:])]
        if any(lines_shown is None for lines_shown in shown):
            continue
        faults = 0
        for (a, b), lines_shown in zip(zip(cuts, cuts[1:]), shown):
            following = words[b].start_s if b < len(words) else limit
            end = cue_end(words[a].start_s, words[b - 1].end_s, sum(map(len, lines_shown)), following)
            faults += faulty(Cue(start_s=words[a].start_s, end_s=end, lines=[CueLine(speaker="SAM", text=text) for text in lines_shown]))
        fewest = faults if fewest is None else min(fewest, faults)
    assert fewest is not None
    assert sum(map(faulty, cues)) == fewest == fewest_faulty_cues("SAM", words, limit)


def test_caption_stats() -> None:
    cues = [
        Cue(start_s=0.0, end_s=2.0, lines=[CueLine(speaker="ALEX", text="Twenty characters.", labelled=True)]),  # 24 chars / 2 s
        Cue(start_s=2.0, end_s=2.5, lines=[CueLine(speaker="ALEX", text="plumbing.")]),  # 9 chars / 0.5 s = 18 cps
        Cue(start_s=2.4, end_s=4.4, lines=[CueLine(speaker="SAM", text="x" * 44, labelled=True), CueLine(speaker="SAM", text="y")]),
    ]
    stats = caption_stats(cues)
    assert (stats.cues, stats.cues_over_cps, stats.max_line_chars, stats.max_lines, stats.cues_under_min_s, stats.overlaps) == (3, 2, 49, 2, 1, 1)
    assert stats.cps_max == pytest.approx(25.0) and stats.cps_median == pytest.approx(18.0) and stats.min_duration_s == 0.5
    assert len(stats.failures) == 4
    good = caption_stats(build_cues([timed_line("A calm line, read slowly enough.", 0.0, per_word=0.6)], names=NAMES))
    assert good.failures == [] and good.cues_over_cps == 0


def test_stats_tell_fast_speech_from_bad_cues() -> None:
    fast = timed_line("Words spoken far too quickly for anyone to read them all in time at all.", 0.0, per_word=0.12)
    after = timed_line("Next.", 1.8, speaker="SAM", index=1)
    stats = caption_stats(build_cues([fast, after], names=NAMES), [fast, after], NAMES)
    assert stats.cues_over_cps >= 1 and stats.cues_over_cps_unavoidable == stats.cues_over_cps and stats.failures == []


# --- formats ---------------------------------------------------------------------------------------


def test_srt_vtt_and_ass_formats() -> None:
    cues = build_cues([timed_line("Hello <world> & friends.", 1.0), timed_line("{Braces} here.", 3500.0, speaker="SAM", index=1)], names=NAMES)
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:01,000 --> 00:00:02,767\nALEX: Hello ‹world› & friends.\n")
    assert "2\n00:58:20,000 --> " in srt
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n") and "<v ALEX>Hello &lt;world&gt; &amp; friends." in vtt
    assert re.search(r"00:58:20\.000 --> 00:58:21\.\d{3}\n<v SAM>", vtt)
    ass = to_ass(cues, 1280, 720)
    assert "PlayResX: 1280" in ass and "PlayResY: 720" in ass
    events = [line for line in ass.splitlines() if line.startswith("Dialogue:")]
    assert len(events) == 2 and events[1].startswith("Dialogue: 0,0:58:20.00,")
    assert "(Braces)" in events[1] and "{Braces}" not in events[1], "braces would start an ASS override block"


HOSTILE = r"Go {\pos(10,10)}here --> now <i>really</i> C:\new {\an8}top"


def test_writers_escape_what_players_would_interpret() -> None:
    cues = build_cues([timed_line(HOSTILE, 1.0, per_word=0.5), timed_line("Fine.", 8.0, speaker="SAM", index=1)], names=NAMES)
    srt = to_srt(cues)
    text_rows = [row for row in srt.splitlines() if row and not row.isdigit() and not re.match(r"\d\d:\d\d:\d\d,\d{3} --> ", row)]
    assert text_rows and not any("-->" in row or "{" in row or "}" in row or "<i>" in row or "\\n" in row for row in text_rows)
    assert any("→" in row for row in text_rows) and any("‹i›" in row for row in text_rows)
    assert [len(cue.lines) for cue in parse_srt(srt)] == [len(cue.lines) for cue in cues], "the file still parses into the same cues"
    vtt = to_vtt(cues)
    assert "-->" not in "".join(vtt.split("\n", 1)[1].replace(" --> ", "").split("\n")) and "<i>" not in vtt
    ass_events = [line.split(",,", 1)[1] for line in to_ass(cues, 1280, 720).splitlines() if line.startswith("Dialogue:")]
    assert not any(re.search(r"\{\\(pos|an)", event) for event in ass_events)
    assert not any("\\n" in re.sub(r"\{[^}]*\}", "", event).replace("\\N", "") for event in ass_events)


def test_two_host_cue_in_every_format() -> None:
    cue = Cue(start_s=1.0, end_s=2.0, lines=[CueLine(host=0, speaker="ALEX", text="Ready?", labelled=True), CueLine(host=1, speaker="SAM", text="Yes.", labelled=True)])
    assert "ALEX: Ready?\nSAM: Yes.\n" in to_srt([cue])
    assert "<v ALEX>Ready?</v>\n<v SAM>Yes.\n" in to_vtt([cue])
    event = next(line for line in to_ass([cue], 1280, 720).splitlines() if line.startswith("Dialogue:"))
    assert event.endswith("{\\c&H00FFD27F&}ALEX: Ready?\\N{\\c&H007FE0FF&}SAM: Yes."), event


def test_the_burned_in_cues_carry_no_names_and_colour_each_host() -> None:
    """Renaming a host must not re-render the picture: the ASS is built from cues without names."""
    lines = [timed_line("Hello there, friends.", 1.0), timed_line("Hi.", 3.0, speaker="SAM", index=1)]
    ass = to_ass(build_cues(lines), 1280, 720)
    assert "ALEX" not in ass and "SAM" not in ass
    events = [line for line in ass.splitlines() if line.startswith("Dialogue:")]
    assert "{\\c&H00FFD27F&}Hello" in events[0] and "{\\c&H007FE0FF&}Hi." in events[-1]


def test_srt_round_trip_keeps_the_statistics() -> None:
    """Times in the file are rounded to milliseconds; lines starting off the millisecond grid too."""
    lines = [
        timed_line("Welcome to the show, where every line is timed.", 0.0004, per_word=0.25),
        timed_line("And captions follow the words far too quickly for anyone.", 3.0004, speaker="SAM", per_word=0.1, index=1),
        timed_line("Then a calm reply.", 4.0004, per_word=0.3, index=2),
    ]
    cues = build_cues(lines, names=NAMES)
    written, built = caption_stats(parse_srt(to_srt(cues)), lines, NAMES).model_dump(), caption_stats(cues, lines, NAMES).model_dump()
    assert built["cues_over_cps"] >= 1
    for field, value in built.items():
        assert written[field] == (pytest.approx(value, abs=0.02) if isinstance(value, float) else value), field


def test_caption_checks_fail_a_fast_cue_that_leaves_the_screen_before_the_next_one():
    from podforge.media.captions import caption_checks

    fast = "Far too many words for half a second."  # 37 chars in 0.5 s
    held = [Cue(start_s=0.0, end_s=0.5, lines=[CueLine(text=fast)]), Cue(start_s=0.5, end_s=2.0, lines=[CueLine(text="Then calm.")])]
    cut = [Cue(start_s=0.0, end_s=0.5, lines=[CueLine(text=fast)]), Cue(start_s=1.5, end_s=3.0, lines=[CueLine(text="Then calm.")])]
    for cues, cut_short in ((held, 0), (cut, 1)):
        checks = {check.name: check for check in caption_checks(caption_stats(cues), cues)}
        assert checks["fast cues cut short"].value == cut_short and checks["fast cues cut short"].passed == (cut_short == 0)
        assert checks["shortest cue"].value == 0.5 and not checks["shortest cue"].passed  # 0.5 s < 0.83 s
        assert checks["longest caption line"].value == len(fast) and checks["longest caption line"].passed
