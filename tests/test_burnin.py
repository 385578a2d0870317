"""Captions drawn once per change by libass and blended into the talking-head layout, against ffmpeg's
``ass`` filter burning the same captions into every frame of the same layout (both encoded losslessly)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import podforge.media.layout as layout
from podforge.media.burnin import caption_changes, caption_overlays
from podforge.media.layout import compose_layout
from podforge.timing import SpeakerTurn
from test_audiogram import EDGES, ass_file

WIDTH, HEIGHT, FPS = 320, 180, 25
LOSSLESS = {"preset": "ultrafast", "qp": "0"}


def host_pictures(frames: int) -> list[list[np.ndarray]]:
    """Two hosts whose pictures change every frame (a moving gradient), so nothing is static."""
    ramp = np.linspace(0, 255, 160, dtype=np.float32)[None, :, None]
    return [[np.broadcast_to((ramp + 7 * n + 90 * host) % 256, (160, 160, 3)).astype(np.uint8) for n in range(frames)] for host in range(2)]


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)])


def test_overlays_cover_the_spans_between_caption_changes(tmp_path):
    ass = ass_file(tmp_path / "captions.ass", WIDTH, HEIGHT, EDGES)
    overlays = caption_overlays(ass, WIDTH, HEIGHT, FPS, 150)
    changes = caption_changes(ass, FPS, 150)
    assert [(o.start, o.end) for o in overlays] == [(start, end) for start, end in zip(changes, changes[1:]) if any(start < cue_end * FPS and cue_start * FPS <= start for cue_start, cue_end, _ in EDGES)]
    for overlay in overlays:
        assert overlay.alpha.max() == 1.0 and overlay.alpha.min() >= 0.0 and overlay.top > HEIGHT // 2, "drawn, near the bottom"
        assert np.all(overlay.rgb <= 255.0 * overlay.alpha + 1e-3), "colour premultiplied by alpha"


def test_the_layout_blends_the_captions_libass_would_burn_into_every_frame(tmp_path, monkeypatch):
    duration, frames = 6.0, 150
    ass = ass_file(tmp_path / "captions.ass", WIDTH, HEIGHT, EDGES)
    turns = [SpeakerTurn(host=0, start_s=0.0, end_s=3.0), SpeakerTurn(host=1, start_s=3.0, end_s=duration)]
    options = {"duration_s": duration, "width": WIDTH, "height": HEIGHT, "fps": FPS, "encoder_options": LOSSLESS, "captions_ass": ass}
    compose_layout(host_pictures(frames), turns, tmp_path / "blended.mp4", **options)
    monkeypatch.setattr(layout, "caption_overlays", lambda *args, **kwargs: None)  # as for animated captions
    compose_layout(host_pictures(frames), turns, tmp_path / "every-frame.mp4", **options)
    blended, every_frame = decode(tmp_path / "blended.mp4"), decode(tmp_path / "every-frame.mp4")
    assert blended.shape == every_frame.shape == (frames, HEIGHT, WIDTH, 3)
    difference = np.abs(blended - every_frame)
    assert difference.mean() < 0.15 and np.percentile(difference, 99.9) <= 24, "the same captions (blending in RGB, not in 4:2:0, moves edges a little)"
    band = slice(HEIGHT * 3 // 4, HEIGHT)
    captioned = [n for n in range(frames) if np.abs(every_frame[n, band] - every_frame[100, band]).mean() > 1]  # frame 100: between cues
    assert captioned and all(difference[n, band].mean() < 1.5 for n in captioned)


def test_animated_captions_have_no_overlays(tmp_path):
    ass = ass_file(tmp_path / "captions.ass", WIDTH, HEIGHT, [(0.5, 2.0, r"{\fad(200,200)}Hello")])
    assert caption_overlays(ass, WIDTH, HEIGHT, FPS, 75) is None
