"""Request and result of the ``avatar`` kind: one host's talking-head video over the whole episode.

All times are on the episode timeline, the one the finished video plays on. The audio may be the host's
own track (silence where others speak) or the whole dialogue track: ``alignment.intervals`` says when
this host speaks, and an engine keeps the mouth still outside them. ``audio_offset_s`` is where the
audio's first sample sits on the episode timeline (the dialogue track starts after the intro).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field, model_validator

from podforge.engines.base import PhonemeTiming


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


class AvatarRequest(BaseModel):
    speaker: str
    portrait: Path
    audio: Path
    audio_offset_s: float = Field(default=0.0, ge=0, description="where the audio starts on the episode timeline")
    alignment: SpeakerAlignment = Field(default_factory=SpeakerAlignment)
    duration_s: float = Field(gt=0, description="length of the video: the whole episode")
    width: int = Field(default=512, ge=64, le=3840)
    height: int = Field(default=512, ge=64, le=2160)
    fps: int = Field(default=25, ge=1, le=60)
    encoder: str = "libx264"
    encoder_options: dict[str, str] = Field(default_factory=dict)
    seed: int = Field(default=0, description="blinks and head motion are random but repeatable")


class AvatarResult(BaseModel):
    video: Path = Field(description="video-only MP4 (H.264) of this host, the whole episode long")
    frames: int
    encoder: str
    notes: dict[str, str] = Field(default_factory=dict, description="what the engine decided (downscaled portrait, chunks…)")


class SpeakerTurn(BaseModel):
    """A stretch of the episode that belongs to one host (for the layout: who is shown or highlighted)."""

    speaker: str
    start_s: float
    end_s: float


class TimedLineLike(Protocol):
    """What these helpers read from a line placed on the episode timeline (``podforge.dialogue.TimedLine``)."""

    speaker: str
    start_s: float
    end_s: float
    phonemes: list[PhonemeTiming]


def alignment_for(speaker: str, lines: Iterable[TimedLineLike]) -> SpeakerAlignment:
    """``speaker``'s phonemes and line intervals, from lines already shifted onto the episode timeline."""
    own = [line for line in lines if line.speaker == speaker]
    return SpeakerAlignment(
        phonemes=[phoneme for line in own for phoneme in line.phonemes],
        intervals=[(line.start_s, line.end_s) for line in own],
    )


def turns_from_lines(lines: Sequence[TimedLineLike], duration_s: float) -> list[SpeakerTurn]:
    """Split ``[0, duration_s]`` into turns that change exactly at the start of a line by another host.

    The first host holds the picture from the start (the intro), each host keeps it through the pause
    after their line, and the last one through the outro; consecutive lines by one host form one turn.
    """
    ordered = sorted(lines, key=lambda line: line.start_s)
    if not ordered:
        return []
    turns: list[SpeakerTurn] = []
    for line in ordered:
        if turns and turns[-1].speaker == line.speaker:
            continue
        start = 0.0 if not turns else line.start_s
        if turns:
            turns[-1] = turns[-1].model_copy(update={"end_s": start})
        turns.append(SpeakerTurn(speaker=line.speaker, start_s=start, end_s=duration_s))
    return turns
