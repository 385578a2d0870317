"""Joining spoken lines into one dialogue track, and the timeline of when each line sits on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from podforge.config import EpisodeTiming
from podforge.engines.base import SpeechResult
from podforge.io import write_text_atomic
from podforge.media.audio import read_mono, write_wav
from podforge.timing import TimedLine


class LineSlot(BaseModel):
    """What the dialogue needs to know of a script line besides its audio: who (by cast position) and where."""

    host: int = Field(ge=0)
    chapter: int = Field(ge=0)
    text: str


class Timeline(BaseModel):
    lines: list[TimedLine]
    duration_s: float
    sample_rate: int

    def shifted(self, offset_s: float) -> list[TimedLine]:
        """The lines moved by ``offset_s`` (the intro), as they sit in the master."""
        return [line.shifted(offset_s) for line in self.lines]


class DialogueTrack(BaseModel):
    wav: Path
    timeline_json: Path
    timeline: Timeline


def assemble(slots: list[LineSlot], clips: list[SpeechResult], timing: EpisodeTiming, workdir: Path) -> DialogueTrack:
    """Concatenate the clips at ``timing.sample_rate`` with a gap between lines (longer at a new chapter)."""
    rate = timing.sample_rate
    pieces: list[np.ndarray] = []
    timed: list[TimedLine] = []
    cursor = 0
    for position, (slot, clip) in enumerate(zip(slots, clips, strict=True)):
        if position:
            gap = timing.chapter_gap_s if slot.chapter != slots[position - 1].chapter else timing.line_gap_s
            pieces.append(np.zeros(int(round(gap * rate)), dtype=np.float32))
            cursor += len(pieces[-1])
        audio = read_mono(clip.wav, rate)
        start = cursor / rate
        placed = clip.alignment.shifted(start)
        timed.append(
            TimedLine(
                index=position,
                host=slot.host,
                text=slot.text,
                chapter=slot.chapter,
                start_s=start,
                end_s=(cursor + len(audio)) / rate,
                words=placed.words,
                phonemes=placed.phonemes,
            )
        )
        pieces.append(audio)
        cursor += len(audio)
    timeline = Timeline(lines=timed, duration_s=cursor / rate, sample_rate=rate)
    wav = write_wav(workdir / "dialogue.wav", np.concatenate(pieces), rate)
    timeline_json = write_text_atomic(workdir / "timeline.json", timeline.model_dump_json(indent=1))
    return DialogueTrack(wav=wav, timeline_json=timeline_json, timeline=timeline)
