"""Joining spoken lines into one dialogue track, and the timeline of who said what when."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from podforge.config import MixSettings
from podforge.engines.base import PhonemeTiming, SpeechResult, WordTiming
from podforge.io import write_text_atomic
from podforge.media.audio import read_mono, write_wav
from podforge.script import ScriptLine


class TimedLine(BaseModel):
    """A line placed on the dialogue track; times are seconds from the track's start."""

    index: int
    speaker: str
    text: str
    chapter: int
    start_s: float
    end_s: float
    words: list[WordTiming]
    phonemes: list[PhonemeTiming]


class Timeline(BaseModel):
    lines: list[TimedLine]
    duration_s: float
    sample_rate: int

    def shifted(self, offset_s: float) -> list[TimedLine]:
        """The lines moved by ``offset_s`` (the intro), as they sit in the master."""
        return [
            line.model_copy(
                update={
                    "start_s": line.start_s + offset_s,
                    "end_s": line.end_s + offset_s,
                    "words": [w.model_copy(update={"start_s": w.start_s + offset_s, "end_s": w.end_s + offset_s}) for w in line.words],
                    "phonemes": [p.model_copy(update={"start_s": p.start_s + offset_s, "end_s": p.end_s + offset_s}) for p in line.phonemes],
                }
            )
            for line in self.lines
        ]


class DialogueTrack(BaseModel):
    wav: Path
    timeline_json: Path
    timeline: Timeline


def assemble(lines: list[ScriptLine], clips: list[SpeechResult], mix: MixSettings, workdir: Path) -> DialogueTrack:
    """Concatenate the clips at ``mix.sample_rate`` with a gap between lines (longer at a new chapter)."""
    rate = mix.sample_rate
    pieces: list[np.ndarray] = []
    timed: list[TimedLine] = []
    cursor = 0
    for position, (line, clip) in enumerate(zip(lines, clips, strict=True)):
        if position:
            gap = mix.chapter_gap_s if line.chapter != lines[position - 1].chapter else mix.line_gap_s
            pieces.append(np.zeros(int(round(gap * rate)), dtype=np.float32))
            cursor += len(pieces[-1])
        audio = read_mono(clip.wav, rate)
        start = cursor / rate
        timed.append(
            TimedLine(
                index=line.index,
                speaker=line.speaker,
                text=line.text,
                chapter=line.chapter,
                start_s=start,
                end_s=(cursor + len(audio)) / rate,
                words=[w.model_copy(update={"start_s": w.start_s + start, "end_s": w.end_s + start}) for w in clip.alignment.words],
                phonemes=[p.model_copy(update={"start_s": p.start_s + start, "end_s": p.end_s + start}) for p in clip.alignment.phonemes],
            )
        )
        pieces.append(audio)
        cursor += len(audio)
    timeline = Timeline(lines=timed, duration_s=cursor / rate, sample_rate=rate)
    wav = write_wav(workdir / "dialogue.wav", np.concatenate(pieces), rate)
    timeline_json = write_text_atomic(workdir / "timeline.json", timeline.model_dump_json(indent=1))
    return DialogueTrack(wav=wav, timeline_json=timeline_json, timeline=timeline)
