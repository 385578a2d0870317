"""Publishing an episode into ``<out_dir>/<slug>/`` and the show's feed into ``<out_dir>/<show>/feed.xml``.

Every file is copied atomically; ``manifest.json`` is written last, so a manifest always describes
complete files. Nothing is written outside the output directory.
"""

from __future__ import annotations

from pathlib import Path

from podforge import __version__
from podforge.config import PublishSettings
from podforge.dialogue import DialogueTrack
from podforge.io import atomic_path, copy_atomic, episode_dir, sha256_file, write_text_atomic
from podforge.manifest import EpisodeManifest, FileEntry
from podforge.media.cards import render_cover
from podforge.media.ffmpeg import Loudness
from podforge.media.quality import QualityCheck
from podforge.publishing.chapters import ChapterMark, write_chapters_json
from podforge.publishing.feed import FeedEpisode, ShowInfo, update_feed
from podforge.publishing.id3 import tag_episode_mp3
from podforge.report import render_report
from podforge.script import Script, slugify
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
    duration_s: float,
    loudness: Loudness,
    master_loudness: Loudness,
    quality: list[QualityCheck],
    video_notes: dict,
    out_dir: str | Path,
    settings: PublishSettings,
    flow_run_id: str | None,
    attempt: str | None,
    price_as: str,
) -> EpisodeManifest:
    """Copy ``media`` (name → file, e.g. ``episode.mp4``) into the episode folder, tag, list in the feed.

    ``records`` are the earlier steps' records; ``step`` is this publish step, recorded once the files are
    in place; ``attempt`` tells which records this run made and which it reused. ``loudness`` is the
    delivered MP3's (tagging does not touch its audio); ``quality`` are the steps' checks.
    """
    meta = script.meta
    target = episode_dir(out_dir, script.slug)
    artwork = render_cover(target / "artwork.png", title=meta.title, show=meta.show, size=settings.cover_size)
    published: dict[str, Path] = {"artwork.png": artwork}
    for name, source in media.items():
        if name == "episode.mp3":
            with atomic_path(target / name) as tmp:
                copy_atomic(source, tmp)
                tag_episode_mp3(tmp, title=meta.title, show=meta.show, description=meta.description, chapters=chapters, cover_png=artwork, language=meta.language)
            published[name] = target / name
        else:
            published[name] = copy_atomic(source, target / name)
    published["chapters.json"] = write_chapters_json(target / "chapters.json", chapters, title=meta.title, podcast_name=meta.show)

    show = ShowInfo(title=meta.show, language=meta.language, explicit=meta.explicit, base_url=settings.base_url, author=settings.author, category=settings.category)
    feed = update_feed(
        Path(out_dir).resolve() / slugify(meta.show),
        show,
        FeedEpisode(
            slug=script.slug,
            title=meta.title,
            description=meta.description,
            mp3=published["episode.mp3"],
            duration_s=duration_s,
            explicit=meta.explicit,
            image=artwork,
            chapters_json=published["chapters.json"],
            transcript_vtt=published["episode.vtt"],
        ),
    )

    records = [*records, step.record("podforge", files=len(published))]
    rows = EpisodeManifest.step_rows(records, attempt, price_as)
    manifest = EpisodeManifest(
        podforge_version=__version__,
        slug=script.slug,
        title=meta.title,
        show=meta.show,
        script_source=script.source,
        script_sha256=script.content_sha256,
        flow_run_id=flow_run_id,
        out_dir=target,
        duration_s=round(duration_s, 3),
        loudness=loudness,
        master_loudness=master_loudness,
        video_encoder=video_notes.get("encoder", ""),
        video_encoder_reason=video_notes.get("encoder_reason", ""),
        gpu_seconds=round(sum(row.gpu.gpu_seconds for row in rows), 3),
        gpu_cost_usd=round(sum(row.cost_usd for row in rows), 4),
        gpu_priced_as=price_as,
        steps=rows,
        quality=quality,
        files={name: FileEntry(path=name, sha256=sha256_file(path), bytes=path.stat().st_size) for name, path in published.items()},
        feed=feed,
    )
    write_text_atomic(target / "report.md", render_report(manifest))
    write_text_atomic(target / "manifest.json", manifest.model_dump_json(indent=2))
    return manifest
