"""Atomic file writes and content hashing.

Every artifact is written to a temporary name in its final directory and renamed into place, so a
killed run never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from podforge.errors import ScriptError


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (same suffix); rename it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
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
