"""Every H.264 encode puts a keyframe at least every KEYFRAME_INTERVAL_S, read back from real files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from podforge.engines.sadtalker import join_chunks
from podforge.media.encoders import KEYFRAME_INTERVAL_S, encoder_options
from podforge.media.layout import RawVideoWriter


def keyframe_gaps(video: Path) -> list[float]:
    """Seconds between consecutive keyframes (as the container marks them), and from the last to the end."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        times = sorted(float(packet.pts * stream.time_base) for packet in container.demux(stream) if packet.pts is not None and packet.is_keyframe)
        end = float(stream.duration * stream.time_base) if stream.duration else times[-1]
    return [later - earlier for earlier, later in zip(times, [*times[1:], end])]


def moving_frames(count: int, size: int = 64) -> list[np.ndarray]:
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    return [np.dstack([np.roll(ramp, index)[None, :].repeat(size, 0)] * 3).astype(np.uint8) for index in range(count)]


def write_video(path: Path, seconds: float, fps: int, options: dict[str, str] | None) -> Path:
    with RawVideoWriter(path, 64, 64, fps, encoder_options=options) as writer:
        for frame in moving_frames(round(seconds * fps)):
            writer.write(frame)
    return path


def test_nvenc_and_x264_options_both_ask_for_keyframes() -> None:
    for name in ("libx264", "h264_nvenc"):
        options = encoder_options(name)
        assert options["force_key_frames"] == f"expr:gte(t,n_forced*{KEYFRAME_INTERVAL_S})" and options["forced-idr"] == "1"


@pytest.mark.parametrize(("fps", "options"), [(25, None), (30, encoder_options("libx264"))], ids=["writer-defaults", "episode-options"])
def test_frames_written_through_the_pipe_get_keyframes(tmp_path: Path, fps: int, options: dict[str, str] | None) -> None:
    """The talking-portrait and layout path (RawVideoWriter), with its defaults and with the episode's options."""
    gaps = keyframe_gaps(write_video(tmp_path / "video.mp4", 7.0, fps, options))
    assert len(gaps) >= 4 and max(gaps) <= KEYFRAME_INTERVAL_S + 1e-6


def test_joined_sadtalker_chunks_get_keyframes(tmp_path: Path) -> None:
    chunks = [write_video(tmp_path / f"chunk{index}.mp4", 3.0, 25, {"preset": "ultrafast", "g": "250"}) for index in range(2)]
    joined = join_chunks(chunks, tmp_path / "joined.mp4", frames=150, width=64, height=64, fps=25)
    gaps = keyframe_gaps(joined)
    assert len(gaps) >= 3 and max(gaps) <= KEYFRAME_INTERVAL_S + 1e-6
