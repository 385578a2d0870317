"""Frames into ffmpeg through a pipe, and the multi-host layout that shows who speaks.

:class:`RawVideoWriter` streams RGB frames to ffmpeg's stdin (``rawvideo``), so a video of any length is
made with one frame in memory and no file per frame. :func:`compose_layout` takes one picture per host,
a video file (decoded frame by frame with PyAV) or frames rendered on demand (a talking portrait drawn
straight into the layout, so the episode's picture is encoded once), and lays them out for the episode:

* ``side_by_side``: every host in a tile; the speaking host's tile at full brightness with a coloured
  frame, the others dimmed;
* ``cut``: the speaking host fills the picture.

Who speaks comes from :class:`~podforge.timing.SpeakerTurn` s, which change exactly at
line boundaries, so the picture switches on the frame where the next host's line starts.
"""

from __future__ import annotations

import bisect
import math
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple

import av
import ffmpeg as ffmpeg_graph
import numpy as np

from podforge.timing import SpeakerTurn
from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.media.burnin import burn_in_every_frame
from podforge.media.encoders import encoder_options, encoder_options_for, nvenc_fallback_reason
from podforge.media.ffmpeg import ffmpeg_exe, log_tail

LayoutMode = Literal["side_by_side", "cut"]
HIGHLIGHT_RGB = (255, 196, 40)
INACTIVE_BRIGHTNESS = 0.5
BACKGROUND_RGB = (18, 20, 26)
CAPTION_BAND = 0.14
"""Fraction of the picture's height, at the bottom, that side-by-side tiles leave to the captions."""


NVENC_REPLAY_BYTES = 256 * 1024**2
"""How much of the start of an NVENC encode is kept to be encoded again with libx264 should NVENC fail.

NVENC fails when the encoder opens, on the first frame (no CUDA, a session limit, a lost GPU), so the
frames written until then are all still here; past this many bytes they are dropped."""


class RawVideoWriter:
    """Encode RGB frames written one by one to an MP4, atomically (the file appears only when complete).

    Frames are converted to yuv420p here (OpenCV, BT.601 limited range like ffmpeg's own conversion), so
    half as many bytes cross the pipe and ffmpeg spends its time encoding.

    ``captions_ass``, when given, is burned into the picture on the way (ffmpeg's ``ass`` filter).

    When ``h264_nvenc`` fails, the video is encoded again from its first frame with libx264, as long as
    those frames are still kept (:data:`NVENC_REPLAY_BYTES`); then ``encoder`` is ``libx264`` and
    ``fallback`` says why, for the step's record.

    ::

        with RawVideoWriter(path, 512, 512, 25) as writer:
            for frame in frames:
                writer.write(frame)
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int,
        *,
        encoder: str = "libx264",
        encoder_options: dict[str, str] | None = None,
        captions_ass: Path | None = None,
        binary: str | None = None,
    ):
        if width % 2 or height % 2:
            raise EngineError(f"video size {width}×{height} must be even for yuv420p", field="video")
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.encoder = encoder
        self.encoder_options = dict(encoder_options or encoder_options_for(encoder))
        self.captions_ass = captions_ass
        self.binary = binary
        self.frames = 0
        self.fallback: str | None = None
        self._frame_bytes = width * height * 3 // 2  # yuv420p
        self._kept: list[bytes] | None = [] if encoder == "h264_nvenc" else None
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        import cv2

        self._cv2 = cv2
        self._process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def __enter__(self) -> RawVideoWriter:
        self._tmp = self._atomic.__enter__()
        self._start()
        return self

    def _start(self) -> None:
        assert self._tmp is not None
        picture = ffmpeg_graph.input("pipe:", format="rawvideo", pix_fmt="yuv420p", s=f"{self.width}x{self.height}", framerate=self.fps)
        if self.captions_ass is not None:
            picture = burn_in_every_frame(picture, self.captions_ass, self.fps)
        graph = picture.output(str(self._tmp), vcodec=self.encoder, pix_fmt="yuv420p", an=None, **self.encoder_options)
        args = ffmpeg_graph.compile(graph, cmd="ffmpeg", overwrite_output=True)[1:]
        self._process = subprocess.Popen([ffmpeg_exe(self.binary), "-hide_banner", "-loglevel", "error", *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {self.height}×{self.width}×3, got {frame.dtype} {frame.shape}")
        yuv = self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2YUV_I420)
        data = yuv.tobytes() if self._kept is not None else yuv.data
        if self._kept is not None:
            self._kept.append(data)
            if len(self._kept) * self._frame_bytes > NVENC_REPLAY_BYTES:
                self._kept = None
        if not self._send(data):
            self._process.wait()
            if not self._fall_back():
                raise EngineError(f"ffmpeg ({self.encoder}) stopped after {self.frames} frames:\n{self._log_tail()}", field="ffmpeg")
        self.frames += 1

    def _send(self, data: bytes | memoryview) -> bool:
        """Write one frame to ffmpeg; False when it has stopped reading (it exited)."""
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(data)
        except BrokenPipeError:
            return False
        return True

    def _fall_back(self) -> bool:
        """After h264_nvenc failed: start libx264 and send it every frame so far; False when that cannot be done."""
        if self.encoder != "h264_nvenc" or self._kept is None:
            return False
        self.fallback = nvenc_fallback_reason(self._log_text())
        self.encoder, self.encoder_options = "libx264", encoder_options("libx264")
        self._log.close()
        self._log = tempfile.TemporaryFile()
        self._start()
        kept, self._kept = self._kept, None
        if not all(self._send(data) for data in kept):
            self._process.wait()
            raise EngineError(f"ffmpeg (libx264, after {self.fallback}) stopped:\n{self._log_tail()}", field="ffmpeg")
        return True

    def _close(self) -> int:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
        return process.wait()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        returncode = self._close()
        if exc_type is None and returncode != 0 and self._fall_back():
            returncode = self._close()
        failure = None
        if exc_type is None and returncode != 0:
            failure = EngineError(f"ffmpeg ({self.encoder}) failed while encoding {self.path.name} (exit {returncode}):\n{self._log_tail()}", field="ffmpeg")
        self._log.close()
        if failure is not None:
            self._atomic.__exit__(EngineError, failure, None)  # removes the partial file
            raise failure
        self._atomic.__exit__(exc_type, exc, tb)

    def _log_text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace").strip()

    def _log_tail(self) -> str:
        return log_tail(self._log_text())


def frame_count(duration_s: float, fps: int) -> int:
    """Frames of a video ``duration_s`` long (the last, partial frame included)."""
    return max(1, math.ceil(round(duration_s * fps, 6)))


class TurnIndex:
    """Which host holds the picture at a frame, by binary search over the turns' start frames."""

    def __init__(self, turns: Sequence[SpeakerTurn], fps: int):
        if not turns:
            raise EngineError("the layout needs at least one speaker turn", field="timeline")
        ordered = sorted(turns, key=lambda turn: turn.start_s)
        self._starts = [math.floor(round(turn.start_s * fps, 6)) for turn in ordered]  # the frame in which the turn starts
        self._hosts = [turn.host for turn in ordered]

    def host_at(self, frame: int) -> int:
        return self._hosts[max(0, bisect.bisect_right(self._starts, frame) - 1)]


class LayoutOutput(NamedTuple):
    frames: int
    encoder: str
    encoder_fallback: str | None = None
    """why the encoder asked for was not the one used (NVENC failed), for the step's record"""


def compose_layout(
    videos: Sequence[Path | Iterable[np.ndarray]],
    turns: Sequence[SpeakerTurn],
    out: Path,
    *,
    duration_s: float,
    width: int = 1280,
    height: int = 720,
    fps: int = 25,
    mode: LayoutMode = "side_by_side",
    encoder: str = "libx264",
    encoder_options: dict[str, str] | None = None,
    captions_ass: Path | None = None,
    binary: str | None = None,
) -> LayoutOutput:
    """Lay out one picture per host (``videos[host]``: a video file, or RGB frames) for ``duration_s``;
    the frames written and the encoder used.

    A picture shorter than the episode holds its last frame; frames are taken in order at ``fps`` (the
    host pictures are expected at the same rate, as the avatar engines make them).
    """
    unknown = {turn.host for turn in turns} - set(range(len(videos)))
    if unknown:
        raise EngineError(f"no video for host(s) {', '.join(str(host + 1) for host in sorted(unknown))} in the layout", field="hosts")
    index = TurnIndex(turns, fps)
    tiles = tile_rectangles(len(videos), width, height) if mode == "side_by_side" else [(0, 0, width, height)] * len(videos)
    readers = [_frames(video) if isinstance(video, Path) else iter(video) for video in videos]
    latest: dict[int, np.ndarray] = {}
    total = frame_count(duration_s, fps)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND_RGB  # the tiles are pasted over the same places every frame: the rest stays
    with RawVideoWriter(out, width, height, fps, encoder=encoder, encoder_options=encoder_options, captions_ass=captions_ass, binary=binary) as writer:
        for frame_number in range(total):
            for host, reader in enumerate(readers):
                picture = next(reader, None)
                if picture is not None:
                    latest[host] = picture
                elif host not in latest:
                    raise EngineError(f"host {host + 1}'s picture has no frames", file=videos[host] if isinstance(videos[host], Path) else None, field="video")
            active = index.host_at(frame_number)
            if mode == "cut":
                _paste_fit(canvas, latest[active], tiles[0])
            else:
                for host, tile in enumerate(tiles):
                    _paste_fit(canvas, latest[host], tile, dim=host != active)
                    if host == active:
                        _draw_frame(canvas, tile, thickness=max(4, height // 90))
            writer.write(canvas)
    return LayoutOutput(frames=total, encoder=writer.encoder, encoder_fallback=writer.fallback)


def host_video_size(mode: LayoutMode, hosts: int, width: int, height: int) -> tuple[int, int]:
    """The size to render each host's video at so the layout pastes it without rescaling."""
    if mode == "cut":
        return width, height
    _, _, side, _ = tile_rectangles(hosts, width, height)[0]
    return side, side


def tile_rectangles(count: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of ``count`` square tiles in a centred grid (one row up to three hosts, then two rows).

    The bottom :data:`CAPTION_BAND` of the picture is left free for the burned-in captions.
    """
    columns = count if count <= 3 else math.ceil(count / 2)
    rows = math.ceil(count / columns)
    gap = max(8, width // 64)
    usable_height = int(height * (1 - CAPTION_BAND))
    side = min((width - gap * (columns + 1)) // columns, (usable_height - gap * (rows + 1)) // rows)
    side -= side % 2
    rectangles = []
    for position in range(count):
        row, column = divmod(position, columns)
        in_row = min(columns, count - row * columns)
        x0 = (width - (in_row * side + (in_row - 1) * gap)) // 2
        y0 = (usable_height - (rows * side + (rows - 1) * gap)) // 2
        rectangles.append((x0 + column * (side + gap), y0 + row * (side + gap), side, side))
    return rectangles


def _frames(path: Path) -> Iterator[np.ndarray]:
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise EngineError(f"cannot read host video: {exc}", file=path, field="video") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def _paste_fit(canvas: np.ndarray, picture: np.ndarray, tile: tuple[int, int, int, int], *, dim: bool = False) -> None:
    """Scale ``picture`` to fill the tile (cropping the overflow, centred) and paste it, dimmed if asked."""
    import cv2

    x, y, w, h = tile
    ph, pw = picture.shape[:2]
    scale = max(w / pw, h / ph)
    scaled_w, scaled_h = max(w, round(pw * scale)), max(h, round(ph * scale))
    if (scaled_w, scaled_h) != (pw, ph):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        picture = cv2.resize(picture, (scaled_w, scaled_h), interpolation=interpolation)
    left, top = (scaled_w - w) // 2, (scaled_h - h) // 2
    region = picture[top : top + h, left : left + w]
    if dim:
        cv2.convertScaleAbs(region, dst=canvas[y : y + h, x : x + w], alpha=INACTIVE_BRIGHTNESS)
    else:
        canvas[y : y + h, x : x + w] = region


def _draw_frame(canvas: np.ndarray, tile: tuple[int, int, int, int], thickness: int) -> None:
    x, y, w, h = tile
    canvas[y : y + thickness, x : x + w] = HIGHLIGHT_RGB
    canvas[y + h - thickness : y + h, x : x + w] = HIGHLIGHT_RGB
    canvas[y : y + h, x : x + thickness] = HIGHLIGHT_RGB
    canvas[y : y + h, x + w - thickness : x + w] = HIGHLIGHT_RGB
