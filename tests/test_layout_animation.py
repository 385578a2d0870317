"""Talking heads drawn straight into the layout: the portrait engine delivers an animation, the layout renders
it, and the episode's picture is encoded once. Real photograph, real Piper speech, real ffmpeg."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from podforge.engines.base import AvatarRequest, AvatarResult, SpeechRequest
from podforge.engines.portrait import PortraitEngine
from podforge.media.layout import compose_layout, frame_count, host_video_size, tile_rectangles
from podforge.timing import SpeakerAlignment, SpeakerTurn

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from podforge.engines.piper import PiperEngine

    folder = tmp_path_factory.mktemp("animation")
    portrait = folder / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(portrait)
    speech = PiperEngine().run(SpeechRequest(text="The ovens run for four hours a night. The rest is waiting."), folder)
    return portrait, speech


def request(inputs, deliver: str, size: tuple[int, int]) -> AvatarRequest:
    portrait, speech = inputs
    return AvatarRequest(
        speaker="ALEX",
        portrait=portrait,
        audio=speech.wav,
        alignment=SpeakerAlignment(phonemes=speech.alignment.phonemes),
        duration_s=speech.duration_s,
        width=size[0],
        height=size[1],
        encoder_options={"preset": "veryfast", "crf": "18"},
        deliver=deliver,
    )


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_an_animation_renders_the_frames_the_video_would_have_shown(inputs, tmp_path):
    size = (256, 256)
    engine = PortraitEngine()
    as_video = engine.run(request(inputs, "video", size), tmp_path / "video")
    as_animation = PortraitEngine().run(request(inputs, "animation", size), tmp_path / "animation")  # a fresh process's engine: no rig kept
    assert as_animation.video is None and as_animation.animation.is_file() and as_animation.encoder == ""
    assert not list((tmp_path / "animation").glob("*.mp4")), "nothing is encoded"
    assert as_animation.animation.stat().st_size < 100_000, "a few floats per frame"
    rendered = list(PortraitEngine().frames(as_animation))
    encoded = decode(as_video.video)
    assert len(rendered) == len(encoded) == as_animation.frames == frame_count(inputs[1].duration_s, 25)
    assert rendered[0].shape == (256, 256, 3) and rendered[0].dtype == np.uint8
    differences = [np.abs(a.astype(float) - b.astype(float)).mean() for a, b in zip(rendered, encoded)]
    assert max(differences) < 4.0, "the same picture, less the encoder's loss"
    moving = np.array([np.abs(frame.astype(float) - rendered[0]).mean() for frame in rendered])
    assert moving.max() > 1.0, "the head and mouth move"


def test_an_avatar_result_holds_a_video_or_an_animation():
    with pytest.raises(ValueError, match="needs a video or an animation"):
        AvatarResult(frames=1, encoder="")


def test_the_layout_draws_an_animation_beside_a_video(inputs, tmp_path):
    size = host_video_size("side_by_side", 2, 640, 360)
    engine = PortraitEngine()
    animated = engine.run(request(inputs, "animation", size), tmp_path / "a")
    video = engine.run(request(inputs, "video", size), tmp_path / "b")
    duration = inputs[1].duration_s
    turns = [SpeakerTurn(host=0, start_s=0.0, end_s=duration)]
    out = tmp_path / "layout.mp4"
    written = compose_layout([engine.frames(animated), video.video], turns, out, duration_s=duration, width=640, height=360)
    frames = decode(out)
    assert len(frames) == written.frames == frame_count(duration, 25) and written.encoder == "libx264"
    first = next(iter(engine.frames(animated)))
    x, y, w, h = tile_rectangles(2, 640, 360)[0]
    inner = (slice(y + 12, y + h - 12), slice(x + 12, x + w - 12))  # inside the highlight frame
    assert np.abs(frames[0][inner].astype(float) - first[12:-12, 12:-12].astype(float)).mean() < 6.0, "the animated host fills its tile"


def test_the_layouts_captions_are_on_a_cues_first_frame(tmp_path):
    """At 30 fps a cue starting at 3.7 s is on frame 111 (the ``ass`` filter's float time once read 3699 ms)."""
    from test_audiogram import EDGES, ass_file

    ass = ass_file(tmp_path / "captions.ass", 320, 180, EDGES)
    pictures = [[np.full((160, 160, 3), 60 + 80 * host, np.uint8)] for host in range(2)]  # still hosts: only captions change
    turns = [SpeakerTurn(host=0, start_s=0.0, end_s=4.0)]
    out = tmp_path / "layout.mp4"
    compose_layout(pictures, turns, out, duration_s=4.0, width=320, height=180, fps=30, encoder_options={"preset": "ultrafast", "qp": "0"}, captions_ass=ass)
    band = (slice(140, 180), slice(0, 320))
    frames = [frame[band].astype(np.int16) for frame in decode(out)]
    shown = [index for index, frame in enumerate(frames) if np.abs(frame - frames[100]).mean() > 1]  # frame 100: between cues
    assert 111 in shown and 110 not in shown and 15 in shown and 14 not in shown
