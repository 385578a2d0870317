r"""Captions burned into a picture by libass, drawn once per caption change instead of once per frame.

Static captions (every ASS event without animation tags) look the same on every frame between two cue
edges, so libass needs to draw them once per span: :func:`caption_changes` finds the spans' first frames.
The audiogram feeds its card once per span (:func:`write_stills_list`) through ffmpeg's ``ass`` filter;
the talking-head layout gets each span's captions as a transparent patch (:func:`caption_overlays`) and
blends it into its frames itself (:func:`blend_overlay`). Captions that animate (``\t``, ``\move``,
``\fad``, karaoke) return None: those need libass on every frame.

The ``ass`` filter truncates a frame's time to whole milliseconds after a floating-point product, so a
picture stamped exactly at 65.52 s is drawn at 65519 ms, before a cue that starts at 65.52 s: pictures are
stamped :func:`libass_offset_us` after their frame's time.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.media.ffmpeg import ffmpeg_exe, log_tail

ANIMATION_TAGS = re.compile(r"\\(t\(|move|fade?\(|k[fo]?\d|K\d)")
"""ASS override tags whose picture changes within an event: such captions are drawn on every frame."""
ASS_TIME = re.compile(r"(\d+):(\d\d):(\d\d)\.(\d\d)")


class CaptionOverlay(NamedTuple):
    """The captions of frames ``start`` to ``end`` (exclusive): a premultiplied RGB patch and its alpha, at ``left``, ``top``."""

    start: int
    end: int
    left: int
    top: int
    rgb: np.ndarray
    """float32, height × width × 3, colour already multiplied by alpha"""
    alpha: np.ndarray
    """float32, height × width × 1, 0 to 1"""


def libass_offset_us(fps: int) -> int:
    """How far after its first frame's time a still is stamped, in microseconds.

    The ``ass`` filter truncates a frame's time to whole milliseconds after a floating-point product, so
    a still stamped exactly at 65.52 s is rendered at 65519 ms, before a cue that starts at 65.52 s. A cue
    boundary (whole centiseconds) after a frame time is at least ``10/fps`` ms after it; a quarter of that
    lands inside the span and rounds back to the same frame in the ``fps`` filter."""
    return max(1, 2500 // fps)


def caption_changes(ass: Path, fps: int, frames: int) -> list[int] | None:
    """The frames at which the burned-in captions change (the first frame is 0), or None when an event
    animates (then every frame needs libass). A cue from ``start`` to ``end`` is on the frames whose time
    ``t`` has ``start <= t < end``, as libass decides it."""
    changes = {0}
    for line in Path(ass).read_text(encoding="utf-8-sig").splitlines():
        if not line.startswith("Dialogue:"):
            continue
        fields = line.split(",", 9)
        if len(fields) < 10 or ANIMATION_TAGS.search(fields[9]):
            return None
        for stamp in fields[1:3]:
            match = ASS_TIME.fullmatch(stamp.strip())
            if match is None:
                return None
            hours, minutes, seconds, centiseconds = (int(part) for part in match.groups())
            time_cs = ((hours * 60 + minutes) * 60 + seconds) * 100 + centiseconds
            changes.add(-(-time_cs * fps // 100))  # the first frame at or after it
    return sorted(frame for frame in changes if frame < frames) + [frames]


def write_stills_list(card: Path, changes: list[int], fps: int) -> Path:
    """An ffconcat list beside ``card``: the card once per span between caption changes, lasting the span."""
    still = f"file '{card.name}'\noption framerate {fps}"  # times in whole frames, not image2's default 1/25 s
    entries = [f"{still}\nduration {(end - start) / fps:.6f}" for start, end in zip(changes, changes[1:])]
    stills = card.with_name("stills.ffconcat")
    with atomic_path(stills) as tmp:
        tmp.write_text("ffconcat version 1.0\n" + "\n".join([*entries, still]) + "\n", encoding="utf-8")
    return stills


def caption_overlays(ass: Path, width: int, height: int, fps: int, frames: int, binary: str | None = None) -> list[CaptionOverlay] | None:
    """Each span's captions drawn once by libass on a transparent ``width`` × ``height`` picture, cropped to
    what it drew; None when the captions animate."""
    changes = caption_changes(ass, fps, frames)
    if changes is None:
        return None
    with tempfile.TemporaryDirectory(prefix="podforge-captions-") as scratch:
        clear = Path(scratch) / "clear.png"
        Image.new("RGBA", (width, height), (0, 0, 0, 0)).save(clear)
        graph = f"format=rgba,settb=1/1000000,setpts=PTS+{libass_offset_us(fps)},ass=filename='{_filter_path(ass)}':alpha=1"
        command = [ffmpeg_exe(binary), "-v", "error", "-f", "concat", "-safe", "0", "-i", str(write_stills_list(clear, changes, fps)), "-vf", graph, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgba", "-"]
        done = subprocess.run(command, capture_output=True, check=False)
    size = width * height * 4
    if done.returncode != 0 or len(done.stdout) < size * (len(changes) - 1):
        raise EngineError(f"ffmpeg could not draw the captions {Path(ass).name}:\n{log_tail(done.stderr.decode('utf-8', 'replace'))}", file=ass, field="captions_ass")
    overlays = []
    for index, (start, end) in enumerate(zip(changes, changes[1:])):
        picture = np.frombuffer(done.stdout, np.uint8, size, index * size).reshape(height, width, 4)
        rows, columns = np.nonzero(picture[..., 3])
        if rows.size:
            top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
            patch = picture[top:bottom, left:right].astype(np.float32)
            overlays.append(CaptionOverlay(start, end, int(left), int(top), patch[..., :3], patch[..., 3:] / 255.0))
    return overlays


def blend_overlay(canvas: np.ndarray, overlay: CaptionOverlay) -> np.ndarray:
    """Draw ``overlay`` over ``canvas`` (RGB uint8) in place; returns what was under it, to put back with
    ``canvas[top:top + h, left:left + w] = under``."""
    height, width = overlay.alpha.shape[:2]
    region = canvas[overlay.top : overlay.top + height, overlay.left : overlay.left + width]
    under = region.copy()
    np.copyto(region, (region * (1.0 - overlay.alpha) + overlay.rgb + 0.5).astype(np.uint8))
    return under


def _filter_path(path: Path) -> str:
    """A path inside a filter argument: ffmpeg's escaping of ``\\``, ``'`` and ``:``."""
    return str(path).replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
