"""Publishing an episode into ``<out_dir>/<slug>/``: the files, their tags, the manifest and the report.

Every file is copied atomically; ``manifest.json`` is written last, so a manifest always describes
complete files. Nothing is written outside the episode's folder.
"""

from __future__ import annotations

from pathlib import Path

from podforge import __version__
from podforge.dialogue import DialogueTrack
from podforge.io import atomic_path, copy_atomic, episode_dir, sha256_file, write_text_atomic
from podforge.manifest import EpisodeManifest, FileEntry
from podforge.media.ffmpeg import measure_loudness
from podforge.publishing.chapters import ChapterMark
from podforge.publishing.id3 import tag_episode_mp3
from podforge.report import render_report
from podforge.script import Script
from podforge.steps import StepContext, StepRecord


def chapter_marks(script: Script, dialogue: DialogueTrack, intro_s: float, total_s: float) -> list[ChapterMark]:
    """Chapter starts from the first line of each chapter on the master's clock (the first starts at 0)."""
    starts = [0.0 if c.index == 0 else dialogue.timeline.lines[c.first_line].start_s + intro_s for c in script.chapters]
    ends = [*starts[1:], total_s]
    return [ChapterMark(title=c.title, start_s=round(s, 3), end_s=round(e, 3)) for c, s, e in zip(script.chapters, starts, ends)]


def publish_episode(
    *,
    script: Script,
    records: list[StepRecord],
    step: StepContext,
    media: dict[str, Path],
    chapters: list[ChapterMark],
    cover_png: Path | None,
    duration_s: float,
    master_loudness,
    video_notes: dict,
    out_dir: str | Path,
    flow_run_id: str | None,
) -> EpisodeManifest:
    """Copy ``media`` (name → file, e.g. ``episode.mp4``) into the episode folder and describe it.

    ``records`` are the earlier steps' records; ``step`` is this publish step, recorded once the files are in place.
    """
    target = episode_dir(out_dir, script.slug)
    published: dict[str, Path] = {}
    for name, source in media.items():
        if name == "episode.mp3":
            with atomic_path(target / name) as tmp:
                copy_atomic(source, tmp)
                tag_episode_mp3(
                    tmp,
                    title=script.meta.title,
                    show=script.meta.show,
                    description=script.meta.description,
                    chapters=chapters,
                    cover_png=cover_png,
                    language=script.meta.language,
                )
            published[name] = target / name
        else:
            published[name] = copy_atomic(source, target / name)

    records = [*records, step.record(files=len(published))]
    manifest = EpisodeManifest(
        podforge_version=__version__,
        slug=script.slug,
        title=script.meta.title,
        show=script.meta.show,
        script_source=script.source,
        script_sha256=script.content_sha256,
        flow_run_id=flow_run_id,
        out_dir=target,
        duration_s=round(duration_s, 3),
        loudness=measure_loudness(published["episode.mp3"]),
        master_loudness=master_loudness,
        video_encoder=video_notes.get("encoder", ""),
        video_encoder_reason=video_notes.get("encoder_reason", ""),
        gpu_seconds=round(sum(r.gpu.gpu_seconds for r in records), 3),
        gpu_cost_usd=round(sum(r.gpu.cost_usd for r in records), 4),
        steps=EpisodeManifest.step_rows(records, flow_run_id),
        files={name: FileEntry(path=name, sha256=sha256_file(path), bytes=path.stat().st_size) for name, path in published.items()},
    )
    write_text_atomic(target / "report.md", render_report(manifest))
    write_text_atomic(target / "manifest.json", manifest.model_dump_json(indent=2))
    return manifest
