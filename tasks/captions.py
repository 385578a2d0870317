"""Subtitles (SRT and WebVTT with the hosts' names, ASS for burning in) from the speech timing."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from podforge.config import EpisodeTiming
from podforge.io import write_text_atomic
from podforge.media.captions import CAPTION_RULES_VERSION, CaptionStats, build_cues, caption_checks, caption_stats, to_ass, to_srt, to_vtt
from podforge.media.quality import QualityCheck
from podforge.steps import StepOutput, current_step, step_task


class Captions(BaseModel):
    srt: Path
    vtt: Path
    ass: Path
    cues: int
    stats: CaptionStats
    quality: list[QualityCheck] = Field(default_factory=list, description="the caption targets, checked (for the manifest)")


@step_task("captions", version=f"4.{CAPTION_RULES_VERSION}", key=("dialogue", "hosts", "timing", "frame"))
def captions(dialogue: StepOutput, hosts: list[str], timing: EpisodeTiming, frame: tuple[int, int]) -> StepOutput:
    """``hosts`` are the names the sidecar files show (the burned-in cues carry none); ``frame`` is the
    picture size the burn-in is laid out for."""
    step = current_step()
    lines = dialogue.result.timeline.shifted(timing.intro_s)
    end_s = timing.episode_s(dialogue.result.timeline.duration_s)
    named = build_cues(lines, end_s, names=hosts)
    width, height = frame
    stats = caption_stats(named, lines, hosts)
    result = Captions(
        srt=write_text_atomic(step.workdir / "episode.srt", to_srt(named)),
        vtt=write_text_atomic(step.workdir / "episode.vtt", to_vtt(named)),
        ass=write_text_atomic(step.workdir / "episode.ass", to_ass(build_cues(lines, end_s), width, height)),
        cues=len(named),
        stats=stats,
        quality=caption_checks(stats, named),
    )
    return StepOutput(record=step.record("podforge", cues=len(named), cps_max=stats.cps_max, cues_over_cps=stats.cues_over_cps), result=result)
