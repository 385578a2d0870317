"""The shared timing vocabulary: what was said when, and who holds the picture. Imports nothing of Podforge.

Hosts are numbered by their position in the episode's cast (``host`` 0, 1, …), not named: a cached step
whose output does not show a host's name (the dialogue track, a talking head, the layout) must not change
when the name does. The names live in the plan and reach only the steps that print them (captions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field, model_validator


class WordTiming(BaseModel):
    text: str
    start_s: float
    end_s: float


class PhonemeTiming(BaseModel):
    phoneme: str
    start_s: float
    end_s: float


class Alignment(BaseModel):
    """What was said when, relative to the clip start: words for captions, phonemes for lips."""

    words: list[WordTiming] = Field(default_factory=list)
    phonemes: list[PhonemeTiming] = Field(default_factory=list)

    def shifted(self, offset_s: float) -> Alignment:
        return Alignment(
            words=[w.model_copy(update={"start_s": w.start_s + offset_s, "end_s": w.end_s + offset_s}) for w in self.words],
            phonemes=[p.model_copy(update={"start_s": p.start_s + offset_s, "end_s": p.end_s + offset_s}) for p in self.phonemes],
        )


class TimedLine(BaseModel):
    """A line placed on a track; times are seconds from the track's start."""

    index: int
    host: int = Field(ge=0, description="the speaker's position in the cast")
    text: str
    chapter: int
    start_s: float
    end_s: float
    words: list[WordTiming] = Field(default_factory=list)
    phonemes: list[PhonemeTiming] = Field(default_factory=list)

    def shifted(self, offset_s: float) -> TimedLine:
        moved = Alignment(words=self.words, phonemes=self.phonemes).shifted(offset_s)
        return self.model_copy(update={"start_s": self.start_s + offset_s, "end_s": self.end_s + offset_s, "words": moved.words, "phonemes": moved.phonemes})


class SpeakerAlignment(BaseModel):
    """When one host speaks, and what, for the lips: phonemes and/or the intervals of their lines."""

    phonemes: list[PhonemeTiming] = Field(default_factory=list)
    intervals: list[tuple[float, float]] = Field(default_factory=list, description="(start_s, end_s) of this host's lines")

    @model_validator(mode="after")
    def _ordered_intervals(self) -> SpeakerAlignment:
        for start, end in self.intervals:
            if end < start:
                raise ValueError(f"interval ({start}, {end}) ends before it starts")
        self.intervals = sorted(self.intervals)
        return self


class SpeakerTurn(BaseModel):
    """A stretch of the episode that belongs to one host (for the layout: who is shown or highlighted)."""

    host: int
    start_s: float
    end_s: float


def alignment_for(host: int, lines: Iterable[TimedLine]) -> SpeakerAlignment:
    """``host``'s phonemes and line intervals, from lines already placed on the episode timeline."""
    own = [line for line in lines if line.host == host]
    return SpeakerAlignment(phonemes=[phoneme for line in own for phoneme in line.phonemes], intervals=[(line.start_s, line.end_s) for line in own])


def turns_from_lines(lines: Sequence[TimedLine], duration_s: float) -> list[SpeakerTurn]:
    """Split ``[0, duration_s]`` into turns that change exactly at the start of a line by another host.

    The first host holds the picture from the start (the intro), each host keeps it through the pause
    after their line, and the last one through the outro; consecutive lines by one host form one turn.
    """
    turns: list[SpeakerTurn] = []
    for line in sorted(lines, key=lambda line: line.start_s):
        if turns and turns[-1].host == line.host:
            continue
        start = 0.0 if not turns else line.start_s
        if turns:
            turns[-1] = turns[-1].model_copy(update={"end_s": start})
        turns.append(SpeakerTurn(host=line.host, start_s=start, end_s=duration_s))
    return turns
