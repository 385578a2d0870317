"""Publish: the episode's files into ``<out_dir>/<slug>/`` with tags, artwork, chapters, feed, manifest and report."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from podforge.config import PublishSettings
from podforge.publish import chapter_marks, publish_episode
from podforge.report import escape_markdown, render_report
from podforge.script import Script
from podforge.steps import StepOutput, current_run_attempt, current_step, step_task


@step_task("publish", key=("script.content_sha256",), cached=False, retries=1)
def publish(script: Script, outputs: list[StepOutput], out_dir: str, settings: PublishSettings, intro_s: float, price_as: str, warnings: list[str] | None = None):
    """Always runs (cheap, and the output folder may have changed since the last run).

    ``warnings`` are the plan's, for the report; the manifest's quality section gathers the ``quality``
    checks of every step's result.
    """
    by_step = {output.record.step: output for output in outputs}
    master, captions, delivery = by_step["mix"].result, by_step["captions"].result, by_step["mux"].result
    picture = by_step["layout"] if "layout" in by_step else by_step["video"]
    manifest = publish_episode(
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
        quality=[check for output in outputs for check in getattr(output.result, "quality", [])],
        video_notes=picture.record.notes,
        out_dir=out_dir,
        settings=settings,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        attempt=current_run_attempt(),
        price_as=price_as,
        warnings=warnings,
    )
    create_markdown_artifact(markdown=render_report(manifest, settings.base_url), key=f"{script.slug}-report"[:60], description=f"Episode report: {escape_markdown(script.meta.title)}")
    return manifest
