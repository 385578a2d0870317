"""Atomic file writes, content hashing, and the fault points that tests kill a run at.

Every artifact is written to a temporary name in its final directory and renamed into place, so a
killed run never leaves a half-written file that a later run would trust. A temporary name says which
process made it (``.master.tmp-<host>-<pid>-<random>.wav``); the next write into the same folder removes
the temporary files of processes of this host that no longer exist, so a killed run leaves nothing behind
once the step runs again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from podforge.errors import ScriptError

FAULT_ENV = "PODFORGE_FAULT"
"""Comma-separated fault points at which the process kills itself with SIGKILL (tests of crash safety)."""
_HOST = re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(r"\.tmp-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-")


def fault_point(name: str) -> None:
    """Die here, at once and without cleanup, when ``$PODFORGE_FAULT`` names ``name`` (as ``kill -9`` would)."""
    if name in os.environ.get(FAULT_ENV, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)


def temp_marker() -> str:
    """The part of a temporary name that says which process made it."""
    return f".tmp-{_HOST}-{os.getpid()}-"


def made_by_dead_process(name: str) -> bool:
    """A temporary file or folder (by its name) that a process of this host made and that no longer runs."""
    match = _TEMP_NAME.search(name)
    if match is None or match["host"] != _HOST:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_orphan_temps(folder: Path) -> None:
    """Delete what killed processes left in ``folder``: temporary files and folders whose maker is gone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") and made_by_dead_process(entry.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (same suffix); rename it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temps(final.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}{temp_marker()}", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise OSError(f"nothing was written to {final}")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it, which races with threads

def write_bytes_atomic(final: Path, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text_atomic(final: Path, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))


def copy_atomic(source: Path, final: Path) -> Path:
    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
    return Path(final)


def episode_dir(out_dir: str | Path, slug: str) -> Path:
    """``out_dir/slug``, refusing any slug that would land elsewhere (the output layout's one rule)."""
    root = Path(out_dir).resolve()
    target = (root / slug).resolve()
    if target.parent != root:
        raise ScriptError(f"slug {slug!r} would write outside {root}", field="slug")
    return target


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
