r"""Captions burned into a picture by libass, drawn once per caption change instead of once per frame.

Static captions (every ASS event without animation tags) look the same on every frame between two cue
edges, so libass needs to draw them once per span: :func:`caption_changes` finds the spans' first frames.
The audiogram feeds its still card once per span (:func:`write_stills_list`) through ffmpeg's ``ass``
filter. Captions that animate (``\t``, ``\move``, ``\fad``, karaoke) give None: those need libass on
every frame. (The talking-head layout keeps libass on every frame, in ffmpeg's own thread: drawing the
captions once and blending them into each frame in Python was slower, because the layout's Python thread
is what that pipeline waits on.)

The ``ass`` filter truncates a frame's time to whole milliseconds after a floating-point product, so a
picture stamped exactly at 65.52 s is drawn at 65519 ms, before a cue that starts at 65.52 s: pictures (the
audiogram's stills, every frame of the layout) are stamped :func:`libass_offset_us` after their frame's time.
"""

from __future__ import annotations

import re
from pathlib import Path

import ffmpeg

from podforge.io import atomic_path

ANIMATION_TAGS = re.compile(r"\\(t\(|move|fade?\(|k[fo]?\d|K\d)")
"""ASS override tags whose picture changes within an event: such captions are drawn on every frame."""
ASS_TIME = re.compile(r"(\d+):(\d\d):(\d\d)\.(\d\d)")


def libass_offset_us(fps: int) -> int:
    """How far after its first frame's time a still is stamped, in microseconds.

    The ``ass`` filter truncates a frame's time to whole milliseconds after a floating-point product, so
    a still stamped exactly at 65.52 s is rendered at 65519 ms, before a cue that starts at 65.52 s. A cue
    boundary (whole centiseconds) after a frame time is at least ``10/fps`` ms after it; a quarter of that
    lands inside the span and rounds back to the same frame in the ``fps`` filter."""
    return max(1, 2500 // fps)


def burn_in_every_frame(frames: ffmpeg.nodes.FilterableStream, ass: Path, fps: int) -> ffmpeg.nodes.FilterableStream:
    """``frames`` (one per ``1/fps``, numbered from 0) with the captions of ``ass`` drawn by libass on every
    frame, each frame stamped :func:`libass_offset_us` after its time while libass draws it."""
    stamped = frames.filter("settb", "1/1000000").filter("setpts", f"round(N*1000000/{fps})+{libass_offset_us(fps)}")
    return stamped.filter("ass", filename=str(ass)).filter("settb", f"1/{fps}").filter("setpts", "N")


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
