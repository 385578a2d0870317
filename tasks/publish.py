"""Publish: the episode's files into ``<out_dir>/<slug>/`` with tags, artwork, chapters, feed, manifest and report."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from podforge.config import PublishSettings, QaSettings
from podforge.media.quality import QualityCheck
from podforge.planning import EpisodePlan
from podforge.publish import EpisodeContent, chapter_marks, publish_episode
from podforge.qa import qa_checks, summarise
from podforge.report import escape_markdown, render_report
from podforge.steps import StepOutput, current_run_attempt, current_step, step_task


@step_task("publish", key=("plan.script.content_sha256",), cached=False, retries=1)
def publish(plan: EpisodePlan, outputs: list[StepOutput], out_dir: str, settings: PublishSettings, price_as: str, qa: QaSettings):
    """Always runs (cheap, and the output folder may have changed since the last run).

    The report lists the plan's warnings; the manifest's quality section gathers the ``quality`` checks
    of every step's result and each host's speech word error rate from the QA steps.
    """
    script, intro_s = plan.script, plan.timing.intro_s
    by_step = {output.record.step: output for output in outputs}
    master, captions, delivery = by_step["mix"].result, by_step["captions"].result, by_step["mux"].result
    picture = by_step["layout"] if "layout" in by_step else by_step["video"]
    content = EpisodeContent(
        script=script,
        records=[output.record for output in outputs],
        step=current_step(),
        media={
            "episode.mp4": delivery.mp4,
            "episode.mp3": delivery.mp3,
            "episode.wav": delivery.wav,
            "episode.srt": captions.srt,
            "episode.vtt": captions.vtt,
        },
        chapters=chapter_marks(script, by_step["dialogue"].result, intro_s, master.duration_s),
        duration_s=master.duration_s,
        loudness=delivery.loudness["episode.mp3"],
        master_loudness=master.loudness,
        quality=[check for output in outputs for check in getattr(output.result, "quality", [])] + speech_quality(plan, outputs, qa),
        video_notes=picture.record.notes,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        attempt=current_run_attempt(),
        price_as=price_as,
        warnings=plan.warnings,
    )
    manifest = publish_episode(content, out_dir, settings)
    create_markdown_artifact(markdown=render_report(manifest, settings.base_url), key=f"{script.slug}-report"[:60], description=f"Episode report: {escape_markdown(script.meta.title)}")
    return manifest


def speech_quality(plan: EpisodePlan, outputs: list[StepOutput], qa: QaSettings) -> list[QualityCheck]:
    """Each host's word error rate over the lines the QA steps heard (none when QA was off)."""
    checks = [output.result.check for output in outputs if output.record.step == "qa"]
    if not checks or plan.asr is None:
        return []
    return qa_checks(summarise(checks, plan.host_names, plan.asr.name, qa.max_wer))
