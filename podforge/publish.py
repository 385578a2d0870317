"""Publishing an episode into ``<out_dir>/<slug>/`` and the show's feed into ``<out_dir>/<show>/feed.xml``.

The episode folder is published as a whole. It is built beside its target, in a hidden staging folder
(``<out_dir>/.<slug>.tmp-<host>-<pid>-<random>/``): media copied and tagged, artwork, chapters, report and
manifest. It is verified (every file's sha256 against the manifest, each copy against its source, and the
media's durations against the manifest's), synced to disk, and then swapped in:

- with one atomic exchange of the two folders (Linux ``renameat2(RENAME_EXCHANGE)``) where the file system
  has it; the earlier episode, now in the staging folder, is then deleted;
- elsewhere with two renames: the earlier episode moves aside to ``.<slug>.previous``, the new one in. A run
  killed between them leaves the earlier episode there, and the next publish puts it back first.

So at every instant ``<out_dir>/<slug>/`` holds the earlier episode or the new one, complete, never a mix.
A failure before the swap (a full disk, a read-only folder, a failed check) removes the staging folder and
leaves the earlier episode byte-identical; what a killed run leaves is removed by the next publish. The
feed is updated after the swap. Publishes into one output folder take turns (an ``flock`` on the folder).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from podforge import __version__
from podforge.config import PublishSettings
from podforge.dialogue import DialogueTrack
from podforge.errors import OutputError
from podforge.io import copy_atomic, fault_point, remove_orphan_temps, sha256_file, temp_marker, write_text_atomic
from podforge.manifest import EpisodeManifest, FileEntry, SpokenAs
from podforge.media.cards import render_cover
from podforge.media.ffmpeg import Loudness, probe
from podforge.media.quality import QualityCheck
from podforge.output import MANIFEST_FILE, check_destination, output_error, show_dir
from podforge.publishing.chapters import ChapterMark, write_chapters_json
from podforge.publishing.feed import FEED_FILE, FeedEpisode, ShowInfo, load_items, update_feed
from podforge.publishing.id3 import tag_episode_mp3
from podforge.report import render_report
from podforge.script import Script
from podforge.steps import StepContext, StepRecord
from podforge.textnorm import rewrites

DURATION_TOLERANCE_S = 0.5
"""How far a published medium's duration may be from the manifest's (MP3 and AAC frames pad the ends)."""
TIMED_MEDIA = ("episode.mp4", "episode.mp3", "episode.wav")


def chapter_marks(script: Script, dialogue: DialogueTrack, intro_s: float, total_s: float) -> list[ChapterMark]:
    """Chapter starts from the first line of each chapter on the master's clock (the first starts at 0)."""
    starts = [0.0 if c.index == 0 else dialogue.timeline.lines[c.first_line].start_s + intro_s for c in script.chapters]
    ends = [*starts[1:], total_s]
    return [ChapterMark(title=c.title, start_s=round(s, 3), end_s=round(e, 3)) for c, s, e in zip(script.chapters, starts, ends)]


@dataclass(frozen=True)
class EpisodeContent:
    """What the earlier steps made, as the publish step hands it over.

    ``records`` are the earlier steps' records; ``step`` is this publish step, recorded once the files are
    staged; ``attempt`` tells which records this run made and which it reused. ``loudness`` is the
    delivered MP3's (tagging does not touch its audio); ``quality`` are the steps' checks; ``warnings``
    the plan's.
    """

    script: Script
    records: list[StepRecord]
    step: StepContext
    media: dict[str, Path]
    chapters: list[ChapterMark]
    duration_s: float
    loudness: Loudness
    master_loudness: Loudness
    quality: list[QualityCheck]
    video_notes: dict
    flow_run_id: str | None
    attempt: str | None
    price_as: str
    warnings: list[str] = field(default_factory=list)


def publish_episode(content: EpisodeContent, out_dir: str | Path, settings: PublishSettings) -> EpisodeManifest:
    """Publish ``content.media`` (name → file, e.g. ``episode.mp4``) as the episode folder, tagged, and list it in the feed.

    Output problems (full disk, read-only folder, a file in the way, another episode's folder) are one-line
    :class:`OutputError` s.
    """
    script, media = content.script, content.media
    meta = script.meta
    target = check_destination(out_dir, script)
    root = target.parent
    show = ShowInfo(
        title=meta.show,
        language=meta.language,
        explicit=meta.explicit,
        base_url=settings.base_url,
        author=settings.author,
        owner_name=settings.owner_name,
        owner_email=settings.owner_email,
        category=settings.category,
    )
    with _taking_turns(root):
        restore_interrupted_swap(target)
        check_destination(out_dir, script)  # again: another run may have published meanwhile
        load_items(show_dir(root, meta.show))  # a feed that cannot be updated fails before the episode is touched
        remove_orphan_temps(root)
        staging = _staging_folder(root, target.name)
        try:
            manifest = _stage(staging, target, content, settings)
            verify_episode(staging, manifest, sources={name: path for name, path in media.items() if name != "episode.mp3"})
            _sync(staging)
            fault_point("publish:staged")
            swap_in(staging, target)
            fault_point("publish:swapped")
        except OSError as exc:
            raise output_error(exc, target, "publishing the episode") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # the new episode before the swap, the earlier one after it
        fault_point("publish:feed")
        try:
            update_feed(
                show_dir(root, meta.show),
                show,
                FeedEpisode(
                    slug=script.slug,
                    title=meta.title,
                    description=meta.description,
                    mp3=target / "episode.mp3",
                    duration_s=content.duration_s,
                    explicit=meta.explicit,
                    image=target / "artwork.png",
                    chapters_json=target / "chapters.json",
                    transcript_vtt=target / "episode.vtt",
                ),
            )
        except OSError as exc:
            raise output_error(exc, show_dir(root, meta.show), "updating the show's feed (the episode itself is published)") from exc
    return manifest


def spoken_as(script: Script) -> list[SpokenAs]:
    """Every stretch of the script that text normalisation reads out differently, line by line (acronyms
    merely spelled out, "GPU" as "G P U", are left out: they read as written)."""
    return [
        SpokenAs(line=line.source_line, speaker=line.speaker, written=rewrite.written, spoken=rewrite.spoken)
        for line in script.lines
        for rewrite in rewrites(line.text, script.meta.language)
        if rewrite.spoken.replace(" ", "") != rewrite.written
    ]


def _stage(staging: Path, target: Path, content: EpisodeContent, settings: PublishSettings) -> EpisodeManifest:
    """Every file of the episode in ``staging``; the manifest describes them as they will be at ``target``."""
    script, chapters, meta = content.script, content.chapters, content.script.meta
    artwork = render_cover(staging / "artwork.png", title=meta.title, show=meta.show, size=settings.cover_size)
    staged: dict[str, Path] = {"artwork.png": artwork}
    for name, source in content.media.items():
        staged[name] = copy_atomic(source, staging / name)
        if name == "episode.mp3":
            tag_episode_mp3(staged[name], title=meta.title, show=meta.show, description=meta.description, chapters=chapters, cover_png=artwork, language=meta.language)
        fault_point(f"publish:copied:{name}")
    staged["chapters.json"] = write_chapters_json(staging / "chapters.json", chapters, title=meta.title, podcast_name=meta.show)

    records = [*content.records, content.step.record("podforge", files=len(staged))]
    rows = EpisodeManifest.step_rows(records, content.attempt, content.price_as)
    manifest = EpisodeManifest(
        podforge_version=__version__,
        slug=script.slug,
        title=meta.title,
        show=meta.show,
        script_source=script.source,
        script_sha256=script.content_sha256,
        flow_run_id=content.flow_run_id,
        out_dir=target,
        duration_s=round(content.duration_s, 3),
        loudness=content.loudness,
        master_loudness=content.master_loudness,
        video_encoder=content.video_notes.get("encoder", ""),
        video_encoder_reason=content.video_notes.get("encoder_reason", ""),
        gpu_seconds=round(sum(row.gpu.gpu_seconds for row in rows), 3),
        gpu_cost_usd=round(sum(row.cost_usd for row in rows), 4),
        gpu_priced_as=content.price_as,
        steps=rows,
        quality=content.quality,
        spoken_as=spoken_as(script),
        files={name: FileEntry(path=name, sha256=sha256_file(path), bytes=path.stat().st_size) for name, path in staged.items()},
        feed=show_dir(target.parent, meta.show) / FEED_FILE,
        warnings=content.warnings,
    )
    write_text_atomic(staging / "report.md", render_report(manifest, settings.base_url))
    write_text_atomic(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2))
    return manifest


def verify_episode(folder: Path, manifest: EpisodeManifest, sources: dict[str, Path]) -> None:
    """Check a built episode folder before it is published; an :class:`OutputError` says what is wrong.

    Every file the manifest lists has its sha256 and size; each copied medium is byte-identical to its
    source (``sources``: name → the step's file); the MP4, MP3 and WAV last the manifest's duration.
    """
    for name, entry in manifest.files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            raise OutputError(f"{name} does not match the manifest after writing it; nothing was published", file=folder.name, field="out_dir")
    for name, source in sources.items():
        if manifest.files[name].sha256 != sha256_file(source):
            raise OutputError(f"{name} differs from the file it was copied from; nothing was published", file=folder.name, field="out_dir")
    for name in TIMED_MEDIA:
        if name in manifest.files:
            seconds = probe(folder / name).duration_s
            if abs(seconds - manifest.duration_s) > DURATION_TOLERANCE_S:
                raise OutputError(f"{name} lasts {seconds:.2f} s, the manifest says {manifest.duration_s:.2f} s; nothing was published", file=folder.name, field="out_dir")


def swap_in(staging: Path, target: Path) -> None:
    """Put the folder ``staging`` at ``target``; the earlier ``target``, if any, ends up at ``staging`` or is gone."""
    if not target.exists():
        os.rename(staging, target)
    elif not exchange_folders(staging, target):
        aside = previous_folder(target)
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(target, aside)
        fault_point("publish:aside")
        os.rename(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
    _sync_folder(target.parent)


def restore_interrupted_swap(target: Path) -> None:
    """After a run killed between the two renames of :func:`swap_in`: put the earlier episode back."""
    aside = previous_folder(target)
    if aside.is_dir():
        if target.exists():
            shutil.rmtree(aside)  # the new episode got in; the earlier one was only not yet deleted
        else:
            os.rename(aside, target)


def previous_folder(target: Path) -> Path:
    return target.with_name(f".{target.name}.previous")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_folders(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported.

    ``PODFORGE_NO_RENAME_EXCHANGE=1`` makes it always False: the two-rename swap, for a file system that
    claims the exchange but misbehaves, and for the tests of that path.
    """
    if os.environ.get("PODFORGE_NO_RENAME_EXCHANGE"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _staging_folder(root: Path, slug: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{slug}{temp_marker()}", dir=root))


@contextlib.contextmanager
def _taking_turns(root: Path) -> Iterator[None]:
    """One publish at a time into ``root`` (created if missing): an exclusive ``flock`` on the folder itself."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise output_error(exc, root, "opening the output folder") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _sync(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (a swapped-in episode survives a power cut)."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
