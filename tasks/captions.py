"""Subtitles (SRT and WebVTT with the hosts' names, ASS for burning in) from the speech timing."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from podforge.config import EpisodeTiming
from podforge.io import write_text_atomic
from podforge.media.captions import build_cues, to_ass, to_srt, to_vtt
from podforge.steps import StepOutput, current_step, step_task


class Captions(BaseModel):
    srt: Path
    vtt: Path
    ass: Path
    cues: int


@step_task("captions", version="2", key=("dialogue", "hosts", "timing", "frame"))
def captions(dialogue: StepOutput, hosts: list[str], timing: EpisodeTiming, frame: tuple[int, int]) -> StepOutput:
    """``hosts`` are the names the sidecar files show; ``frame`` the picture size the burn-in is laid out for."""
    step = current_step()
    cues = build_cues(dialogue.result.timeline.shifted(timing.intro_s))
    width, height = frame
    result = Captions(
        srt=write_text_atomic(step.workdir / "episode.srt", to_srt(cues, hosts)),
        vtt=write_text_atomic(step.workdir / "episode.vtt", to_vtt(cues, hosts)),
        ass=write_text_atomic(step.workdir / "episode.ass", to_ass(cues, width, height)),
        cues=len(cues),
    )
    return StepOutput(record=step.record("podforge", cues=len(cues)), result=result)
