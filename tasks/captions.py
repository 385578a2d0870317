"""Subtitles (SRT, WebVTT, and ASS for burn-in) from the speech timing."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from podforge.config import MixSettings, VideoSettings
from podforge.io import write_text_atomic
from podforge.media.captions import build_cues, to_ass, to_srt, to_vtt
from podforge.steps import StepContext, StepOutput, step_task


class Captions(BaseModel):
    srt: Path
    vtt: Path
    ass: Path
    cues: int


@step_task("captions")
def write_captions(dialogue: StepOutput, mix: MixSettings, video: VideoSettings) -> StepOutput:
    step = StepContext("captions", "podforge", {"dialogue": dialogue, "intro_s": mix.intro_s, "size": (video.width, video.height)})
    cues = build_cues(dialogue.result.timeline.shifted(mix.intro_s))
    captions = Captions(
        srt=write_text_atomic(step.workdir / "episode.srt", to_srt(cues)),
        vtt=write_text_atomic(step.workdir / "episode.vtt", to_vtt(cues)),
        ass=write_text_atomic(step.workdir / "episode.ass", to_ass(cues, video.width, video.height)),
        cues=len(cues),
    )
    return StepOutput(record=step.record(cues=len(cues)), result=captions)
