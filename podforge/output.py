"""The output folder's rules: where an episode and its show go, who owns an episode folder, and whether
the folder can be written at all. Checked in the pre-flight (CLI and flow) and again when publishing.

``<out_dir>/<slug>/`` holds one episode and ``<out_dir>/<show slug>/`` its show's feed. The two never
coincide: an episode whose slug is its show's (or any show's) folder is refused, and so is a show whose
folder is an episode's.

An episode folder belongs to the episode that published it. Publishing again replaces it when it is the
same episode: the same script content, the same script file (an edited script), or the same title and
show. A different episode with the same slug is refused, naming the episode that is there; the fix is
a different ``slug:`` in the front matter (Podforge never numbers folders on its own, so an episode's
address does not depend on which was published first).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from podforge.errors import OutputError
from podforge.io import episode_dir
from podforge.script import Script, slugify

MANIFEST_FILE = "manifest.json"
SHOW_MARKERS = ("feed.xml", "feed-items.json")
INLINE_SOURCES = ("script_text", "<inline>")

_WHY = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "is a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EFBIG: "file too large (the file system's or the process's file size limit, ulimit -f)",
    errno.ENAMETOOLONG: "the path is too long",
}


def describe_os_error(exc: OSError) -> str:
    """What an operating-system error means for the output, in a few words."""
    return _WHY.get(exc.errno or 0, exc.strerror or str(exc))


def output_error(exc: OSError, path: Path, what: str) -> OutputError:
    """``exc`` (raised while ``what``) as a one-line :class:`OutputError` that names ``path``."""
    return OutputError(f"{describe_os_error(exc)} while {what}; the earlier episode, if any, is unchanged", file=path, field="out_dir")


def show_dir(out_dir: str | Path, show: str) -> Path:
    return Path(out_dir).resolve() / slugify(show)


def check_destination(out_dir: str | Path, script: Script) -> Path:
    """The episode's folder, once the output folder is known to take it; else a one-line :class:`OutputError`.

    Writes nothing that stays: a folder that exists is probed with a temporary file.
    """
    root = Path(out_dir).resolve()
    target = episode_dir(root, script.slug)
    check_writable(root)
    check_folders(root, target, script)
    check_owner(target, script)
    return target


def check_writable(root: Path) -> None:
    """``root`` is a folder (or can become one) that this process can write in."""
    existing = root
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        problem = "is a file, not a folder" if existing == root else f"cannot be created: {existing} is a file, not a folder"
        raise OutputError(problem, file=root, field="out_dir")
    try:
        fd, probe = tempfile.mkstemp(prefix=".podforge-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot be written: {describe_os_error(exc)}", file=existing if existing != root else root, field="out_dir") from None


def check_folders(root: Path, target: Path, script: Script) -> None:
    """The episode's folder is not a show's folder, and the show's folder is not an episode's."""
    show = show_dir(root, script.meta.show)
    if target == show:
        raise OutputError(
            f"the episode's slug {script.slug!r} is also its show's folder (show {script.meta.show!r}); set a different `slug:` in the front matter",
            file=script.source,
            field="slug",
        )
    if any((target / marker).exists() for marker in SHOW_MARKERS):
        raise OutputError(f"{target} is the folder of a show's feed; set a different `slug:` in the front matter", file=script.source, field="slug")
    if (show / MANIFEST_FILE).exists():
        raise OutputError(f"the show's folder {show} holds an episode; rename the show or that episode's slug", file=script.source, field="show")


def check_owner(target: Path, script: Script) -> None:
    """``target`` is free, or holds this same episode (see the module's rules); else refuse, naming the episode there."""
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError("is a file, not an episode folder", file=target, field="out_dir")
    manifest = target / MANIFEST_FILE
    if not manifest.is_file():
        if any(not entry.name.startswith(".") for entry in os.scandir(target)):
            raise OutputError(f"{target} exists and is not a Podforge episode (no manifest.json); move it away or set a different `slug:`", file=script.source, field="slug")
        return
    try:
        there = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{target} holds an unreadable manifest.json ({exc}); move it away or set a different `slug:`", file=script.source, field="slug") from None
    if not same_episode(there, script):
        raise OutputError(
            f"{target} already holds another episode, {there.get('title')!r} from {there.get('script_source')}; "
            "set a different `slug:` in the front matter, or delete that folder to replace it",
            file=script.source,
            field="slug",
        )


def same_episode(manifest: dict, script: Script) -> bool:
    """Whether a published manifest is an earlier publication of ``script`` (same content, file, or title and show)."""
    if manifest.get("script_sha256") == script.content_sha256:
        return True
    if script.source not in INLINE_SOURCES and manifest.get("script_source") == script.source:
        return True
    return (manifest.get("title"), manifest.get("show")) == (script.meta.title, script.meta.show)
