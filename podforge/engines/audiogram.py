r"""The audiogram: a still title card with a live waveform of the episode and burned-in captions.

One ffmpeg graph renders it. The card (drawn with Pillow, see :mod:`podforge.media.cards`) is converted
to yuv420p; the ``ass`` filter (libass) burns the captions into it once per caption change, not once per
frame: the card enters as one still per span between caption changes (an ffconcat list), each stamped
with its span's first frame time, and the ``fps`` filter repeats it over the span. ``showwaves`` draws the
audio on a transparent canvas that is overlaid on the card's waveform panel, above the captions' band
(the card leaves its lowest fifth to them). Captions with animation tags (``\t``, ``\move``, ``\fad``,
karaoke) are burned into every frame instead. The output is video only: the mux step adds the audio.

H.264 comes from the encoder the request names (see :mod:`podforge.media.encoders`). If NVENC was chosen
but fails on this render (a busy or lost GPU, a session limit), the video is rendered again with libx264
and the result says so (``notes["encoder_fallback"]``: NVENC's own error).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import av
import ffmpeg

from pydantic import Field

from podforge.engines.base import Engine, EngineSettings, VideoRequest, VideoResult
from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.media.burnin import burn_in_every_frame, caption_changes, libass_offset_us, write_stills_list
from podforge.media.cards import card_layout, palette_for, render_background
from podforge.media.encoders import encoder_options_for, with_nvenc_fallback
from podforge.media.ffmpeg import run_graph

logger = logging.getLogger(__name__)

MAX_ENCODER_THREADS = 8
"""x264 gains little from more frame threads at 720p/1080p, and episodes may render side by side."""
THREADS_PER_CPU = 2
"""x264 frame threads per usable CPU. One ffmpeg thread draws the waveform and the captions and feeds the
encoder; with only one frame in flight per core, the cores wait on it. Measured on 2 CPUs, a 161 s
episode: 23.2 s with 2 threads, 22.2 s with 4, for the same CPU time."""


class AudiogramSettings(EngineSettings):
    threads: int | None = Field(default=None, ge=1, le=64, description="encoder threads; default: twice the usable cores, at most 8")


class AudiogramEngine(Engine[VideoRequest, VideoResult]):
    """Settings: ``threads`` (encoder threads; default: twice the usable CPUs, at most 8)."""

    name = "audiogram"
    kind = "video"
    version = "1"
    Request = VideoRequest
    Result = VideoResult
    Settings = AudiogramSettings
    settings: AudiogramSettings

    def run(self, request: VideoRequest, workdir: Path) -> VideoResult:
        check_request(request)
        workdir = Path(workdir)
        card = render_background(workdir / "background.png", title=request.title, show=request.show, width=request.width, height=request.height)
        video = workdir / "video.mp4"
        options = request.encoder_options or encoder_options_for(request.encoder)
        _, encoder, fallback = with_nvenc_fallback(lambda name, chosen: self.render(request, card, video, name, chosen), request.encoder, options)
        if fallback:
            logger.warning("%s: %s", video, fallback)
        return VideoResult(video=video, encoder=encoder, frames=count_frames(video), notes={"encoder_fallback": fallback} if fallback else {})

    def render(self, request: VideoRequest, card: Path, video: Path, encoder: str, options: dict[str, str]) -> None:
        picture = audiogram_graph(request, card)
        threads = self.settings.threads or min(MAX_ENCODER_THREADS, THREADS_PER_CPU * usable_cpus())
        arguments: dict[str, object] = {"an": None, "c:v": encoder, "pix_fmt": "yuv420p", "r": request.fps, "threads": threads, **options, "frames:v": frame_count(request)}
        with atomic_path(video) as tmp:
            run_graph(picture.output(str(tmp), **arguments), what=f"rendering the audiogram {video.name} with {encoder}", binary=request.ffmpeg)


def check_request(request: VideoRequest) -> None:
    """Fail early, naming the file or field, on what ffmpeg would reject late or obscurely."""
    for field, path in (("audio", request.audio), ("captions_ass", request.captions_ass)):
        if not Path(path).is_file():
            raise EngineError(f"{field.replace('_', ' ')} file not found: {path}", file=path, field=field)
    if request.duration_s <= 0 or frame_count(request) < 1:
        raise EngineError(f"duration must give at least one frame, got {request.duration_s} s at {request.fps} fps", field="duration_s")
    for field, value in (("width", request.width), ("height", request.height)):
        if value < 16 or value % 2:
            raise EngineError(f"{field} must be an even number of pixels (yuv420p), at least 16; got {value}", field=field)
    if request.fps < 1:
        raise EngineError(f"fps must be at least 1, got {request.fps}", field="fps")


def frame_count(request: VideoRequest) -> int:
    return round(request.duration_s * request.fps)


def audiogram_graph(request: VideoRequest, card: Path, *, every_frame: bool = False) -> ffmpeg.nodes.FilterableStream:
    """The picture: the card with its captions at ``fps``, the waveform overlaid on its panel.

    Captions are drawn once per change, or on every frame (above the waveform) when they animate or
    ``every_frame`` asks for it; both stamp each picture a little after its frame's time (see
    :func:`libass_offset_us`), so both draw the same pictures."""
    wave = card_layout(request.width, request.height).waveform
    red, green, blue = palette_for(request.show).accent
    waveform = (
        ffmpeg.input(str(request.audio))
        .audio.filter("aformat", channel_layouts="mono")
        .filter("showwaves", s=f"{wave.width}x{wave.height}", mode="cline", scale="sqrt", draw="full", rate=request.fps, colors=f"0x{red:02x}{green:02x}{blue:02x}")
    )
    changes = None if every_frame else caption_changes(request.captions_ass, request.fps, frame_count(request))
    if changes is None:
        background = ffmpeg.input(str(card)).video.filter("format", "yuv420p").filter("loop", loop=-1, size=1).filter("settb", f"1/{request.fps}").filter("setpts", "N")
        picture = ffmpeg.overlay(background, waveform, x=wave.left, y=wave.top, format="yuv420", eof_action="pass")
        return burn_in_every_frame(picture, request.captions_ass, request.fps)
    background = (
        ffmpeg.input(str(write_stills_list(card, changes, request.fps)), f="concat", safe=0)
        .video.filter("format", "yuv420p")
        .filter("settb", "1/1000000")
        .filter("setpts", f"PTS+{libass_offset_us(request.fps)}")
        .filter("ass", filename=str(request.captions_ass))
        .filter("fps", fps=request.fps)
        .filter("tpad", stop=-1, stop_mode="clone")
    )
    return ffmpeg.overlay(background, waveform, x=wave.left, y=wave.top, format="yuv420", eof_action="pass")


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def count_frames(video: Path) -> int:
    """Frames in the rendered file, as its container records them."""
    with av.open(str(video)) as container:
        return container.streams.video[0].frames
