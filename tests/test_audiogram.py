"""The audiogram engine and its Pillow cards, rendered with the real ffmpeg and decoded with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image, ImageDraw

import ffmpeg

from podforge.engines.audiogram import AudiogramEngine, audiogram_graph, frame_count
from podforge.media.burnin import caption_changes
from podforge.engines.base import VideoRequest
from podforge.errors import ConfigError, EngineError
from podforge.media import cards
from podforge.media.cards import Box, card_layout, fit_text, render_background, render_cover
from podforge.media.encoders import probe_nvenc
from podforge.media.ffmpeg import ffmpeg_exe, probe

RATE = 48000
TITLE = "Why the smallest models are winning: a conversation about distillation"
SHOW = "The Forge Weekly"
SILENCE_S = (2.2, 3.8)
CAPTIONS = [(0.5, 2.0, "Hello and welcome to the show"), (4.0, 5.5, "Today: small models, big results")]


def speech_like_wav(path: Path, duration_s: float, silence_s: tuple[float, float] = SILENCE_S) -> Path:
    """A voiced, syllable-rhythmed tone (a gliding 140 Hz harmonic series) with a silent gap, stereo."""
    t = np.arange(int(duration_s * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(140 + 25 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
    syllables = np.abs(np.sin(2 * np.pi * 2.0 * t)) ** 0.5
    signal = 0.8 * voiced / np.abs(voiced).max() * syllables
    signal[(t >= silence_s[0]) & (t < silence_s[1])] = 0.0
    soundfile.write(path, np.stack([signal, signal], axis=1), RATE, subtype="PCM_16")
    return path


def ass_file(path: Path, width: int, height: int, events=CAPTIONS) -> Path:
    def stamp(seconds: float) -> str:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{seconds % 60:05.2f}"

    dialogue = "\n".join(f"Dialogue: 0,{stamp(start)},{stamp(end)},Caption,,0,0,0,,{text}" for start, end, text in events)
    path.write_text(
        f"""[Script Info]
ScriptType: v4.00+
PlayResX: {width}
PlayResY: {height}
WrapStyle: 0

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Caption,DejaVu Sans,{height // 16},&H00FFFFFF,&H000000FF,&H00101010,&H80000000,-1,0,0,0,100,100,0,0,1,2,0,2,40,40,{height // 24},1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
{dialogue}
""",
        encoding="utf-8",
    )
    return path


def frames_at(video: Path, *seconds: float) -> dict[float, np.ndarray]:
    """RGB frames shown at the given times."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        wanted = {round(s * float(stream.average_rate)): s for s in seconds}
        found = {}
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                found[wanted[index]] = frame.to_ndarray(format="rgb24").astype(np.int16)
    return found


def region(pixels: np.ndarray, box: Box) -> np.ndarray:
    return pixels[box.top : box.top + box.height, box.left : box.left + box.width]


def make_request(folder: Path, *, width: int, height: int, duration_s: float, fps: int = 25, audio_s: float | None = None, **extra) -> VideoRequest:
    folder.mkdir(parents=True, exist_ok=True)
    return VideoRequest(
        audio=speech_like_wav(folder / "master.wav", audio_s or duration_s),
        captions_ass=ass_file(folder / "captions.ass", width, height),
        title=TITLE,
        show=SHOW,
        duration_s=duration_s,
        width=width,
        height=height,
        fps=fps,
        **extra,
    )


@pytest.fixture(scope="module")
def hd_render(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hd")
    request = make_request(folder / "inputs", width=1280, height=720, duration_s=6.0)
    result = AudiogramEngine().run(request, folder / "work")
    return request, result


def test_video_is_h264_only_at_the_requested_size_rate_and_length(hd_render):
    request, result = hd_render
    assert result.video == Path(result.video).parent / "video.mp4" and result.video.is_file()
    assert result.encoder == "libx264"
    info = probe(result.video)
    assert [stream.kind for stream in info.streams] == ["video"]  # no audio: the mux step adds it
    video = info.streams[0]
    assert (video.codec, video.width, video.height, video.fps) == ("h264", 1280, 720, 25.0)
    assert abs(info.duration_s - request.duration_s) <= 1 / 25 + 1e-6
    assert abs(result.frames - 150) <= 1
    with av.open(str(result.video)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(video=0)) == result.frames


def test_captions_are_burned_in(hd_render):
    request, result = hd_render
    frames = frames_at(result.video, 1.0, 3.0)
    card = np.asarray(Image.open(result.video.parent / "background.png").convert("RGB"), dtype=np.int16)
    captions = Box(0, int(request.height * 0.78), request.width, request.height - int(request.height * 0.78))
    shown, hidden = region(frames[1.0], captions), region(frames[3.0], captions)
    assert np.abs(shown - hidden).mean() > 3
    assert (shown.min(axis=2) > 200).sum() > 500  # white caption text on a dark card
    assert np.abs(hidden - region(card, captions)).mean() < 2  # no caption: just the card


def test_waveform_moves_with_the_audio(hd_render):
    request, result = hd_render
    frames = frames_at(result.video, 1.0, 3.0)
    card = np.asarray(Image.open(result.video.parent / "background.png").convert("RGB"), dtype=np.int16)
    wave = card_layout(request.width, request.height).waveform
    loud = np.abs(region(frames[1.0], wave) - region(card, wave)).max(axis=2)
    silent = np.abs(region(frames[3.0], wave) - region(card, wave)).max(axis=2)
    assert (loud > 40).sum() > 20 * (silent > 40).sum() + 2000
    rows_drawn = np.flatnonzero((loud > 40).any(axis=1))
    assert rows_drawn.max() - rows_drawn.min() > wave.height // 3  # a tall waveform, not a flat line


def test_title_card_text_is_on_the_picture(hd_render):
    request, result = hd_render
    frame = frames_at(result.video, 3.0)[3.0]
    title = region(frame, card_layout(request.width, request.height).title)
    bright = title.min(axis=2) > 200
    assert 0.03 < bright.mean() < 0.6
    assert title.std() > 30


def test_small_render_covers_the_duration_past_the_audio_with_awkward_paths(tmp_path):
    folder = tmp_path / "it's, [odd]: path"
    request = make_request(folder, width=640, height=360, duration_s=2.5, fps=30, audio_s=1.6)
    result = AudiogramEngine().run(request, folder / "work dir")
    info = probe(result.video)
    assert (info.streams[0].width, info.streams[0].height, info.streams[0].fps) == (640, 360, 30.0)
    assert result.frames == 75
    assert abs(info.duration_s - 2.5) <= 1 / 30 + 1e-6
    assert sorted(path.name for path in result.video.parent.iterdir()) == ["background.png", "stills.ffconcat", "video.mp4"]


def test_requested_nvenc_renders_with_it_or_falls_back_to_libx264(tmp_path):
    request = make_request(tmp_path, width=320, height=180, duration_s=0.6, encoder="h264_nvenc", encoder_options={"preset": "p4", "cq": "23"})
    result = AudiogramEngine().run(request, tmp_path / "work")
    nvenc_works = probe_nvenc(ffmpeg_exe()).ok
    assert result.encoder == ("h264_nvenc" if nvenc_works else "libx264")
    if not nvenc_works:  # a real NVENC failure here: NVENC's own reason is kept for the step's record
        fallback = result.notes["encoder_fallback"]
        assert fallback.startswith("h264_nvenc failed (") and "libcuda" in fallback and fallback.endswith("encoded with libx264 instead")
    assert probe(result.video).streams[0].codec == "h264"
    assert result.frames == 15


# --- captions drawn once per change -------------------------------------------------------------------

EDGES = [(0.5, 1.32, "One"), (1.32, 2.0, "Two, back to back"), (2.03, 2.97, "Three"), (3.7, 5.52, "Four")]
"""Cue edges on frame times (1.32 s, 2.0 s, 3.7 s at 30 fps, which the ``ass`` filter's float time would
read as 3699 ms), between frames (2.03 s, 2.97 s), back to back (1.32 s), and a cue past the end."""


def frame_hashes(picture: ffmpeg.nodes.FilterableStream, out: Path, frames: int) -> list[str]:
    ffmpeg.output(picture, str(out), f="framemd5", fps_mode="passthrough", **{"frames:v": frames}).overwrite_output().run(cmd=ffmpeg_exe(), quiet=True)
    return [line.rsplit(",", 1)[1].strip() for line in out.read_text().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("fps", [25, 30])
def test_captions_drawn_once_per_change_equal_captions_drawn_on_every_frame(tmp_path, fps):
    request = make_request(tmp_path, width=320, height=180, duration_s=5.0, fps=fps)
    ass_file(request.captions_ass, 320, 180, EDGES)
    card = render_background(tmp_path / "background.png", title=TITLE, show=SHOW, width=320, height=180)
    frames = frame_count(request)
    once = frame_hashes(audiogram_graph(request, card), tmp_path / "once.md5", frames)
    every = frame_hashes(audiogram_graph(request, card, every_frame=True), tmp_path / "every.md5", frames)
    assert len(once) == frames and once == every
    assert len(set(once)) > frames // 2, "the waveform moves"


def test_a_cue_is_on_its_first_frame_and_off_at_its_end(tmp_path):
    """At 30 fps the fourth cue starts on frame 111 (3.7 s) and the first ends on frame 40 (1.32 s rounds up)."""
    request = make_request(tmp_path, width=320, height=180, duration_s=4.0, fps=30)
    ass_file(request.captions_ass, 320, 180, EDGES)
    result = AudiogramEngine().run(request, tmp_path / "work")
    assert caption_changes(request.captions_ass, 30, frame_count(request)) == [0, 15, 40, 60, 61, 90, 111, 120]
    band = Box(0, int(request.height * 0.8), request.width, request.height - int(request.height * 0.8))
    with av.open(str(result.video)) as container:
        pictures = [region(frame.to_ndarray(format="rgb24").astype(np.int16), band) for frame in container.decode(video=0)]
    blank = pictures[100]  # between the third and the fourth cue
    shown = [index for index, picture in enumerate(pictures) if np.abs(picture - blank).mean() > 1]
    assert 111 in shown and 110 not in shown and 14 not in shown and 15 in shown
    assert set(range(15, 60)) <= set(shown) and not set(range(90, 111)) & set(shown)


def test_animated_captions_are_drawn_on_every_frame(tmp_path):
    def changes(text: str) -> list[int] | None:
        return caption_changes(ass_file(tmp_path / "captions.ass", 320, 180, [(0.5, 2.0, text)]), 25, 75)

    assert changes(r"{\fad(200,200)}Hello") is None
    assert changes(r"{\k20}Hel{\k30}lo") is None
    assert changes(r"{\move(0,0,10,10)}Hello") is None
    assert changes(r"{\c&H00FFD27F&}Hello, {\b1}you") == [0, 13, 50, 75]


@pytest.mark.parametrize("field", ["audio", "captions_ass"])
def test_missing_input_file_is_named(tmp_path, field):
    request = make_request(tmp_path, width=320, height=180, duration_s=1.0)
    missing = tmp_path / f"missing-{field}"
    with pytest.raises(EngineError) as caught:
        AudiogramEngine().run(request.model_copy(update={field: missing}), tmp_path / "work")
    assert caught.value.field == field
    assert caught.value.file == str(missing)
    assert not (tmp_path / "work").exists()


def test_odd_width_is_rejected_by_field(tmp_path):
    request = make_request(tmp_path, width=320, height=180, duration_s=1.0)
    with pytest.raises(EngineError) as caught:
        AudiogramEngine().run(request.model_copy(update={"width": 321}), tmp_path / "work")
    assert caught.value.field == "width"


def test_unreadable_audio_fails_cleanly_leaving_no_video(tmp_path):
    request = make_request(tmp_path, width=320, height=180, duration_s=1.0)
    request.audio.write_text("not audio")
    work = tmp_path / "work"
    with pytest.raises(EngineError) as caught:
        AudiogramEngine().run(request, work)
    assert "rendering the audiogram" in str(caught.value)
    assert sorted(path.name for path in work.iterdir()) == ["background.png", "stills.ffconcat"]  # no video.mp4, no temp file


# --- cards ---------------------------------------------------------------------------------------


def test_background_is_deterministic_and_follows_the_show(tmp_path):
    first = render_background(tmp_path / "a.png", title=TITLE, show=SHOW, width=960, height=540)
    again = render_background(tmp_path / "b.png", title=TITLE, show=SHOW, width=960, height=540)
    other = render_background(tmp_path / "c.png", title=TITLE, show="Another Show", width=960, height=540)
    assert first.read_bytes() == again.read_bytes()
    with Image.open(first) as image:
        assert (image.size, image.mode) == ((960, 540), "RGB")
        corner = image.getpixel((5, 5))
    with Image.open(other) as image:
        assert image.getpixel((5, 5)) != corner
    assert max(corner) < 110  # a dark card
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize(
    "text",
    [
        TITLE,
        "Supercalifragilisticexpialidocious" * 6,
        " ".join(["antidisestablishmentarianism"] * 40),
        "Short",
        "",
    ],
)
def test_fitted_text_never_leaves_its_box(text):
    box = Box(88, 108, 1104, 208)
    draw = ImageDraw.Draw(Image.new("RGB", (1280, 720)))
    fitted = fit_text(text, box, max_size=57, min_size=28, bold=True, max_lines=3)
    assert len(fitted.lines) <= 3
    for x, y, line in fitted.lines:
        left, top, right, bottom = draw.textbbox((x, y), line, font=fitted.font, anchor="ls")
        assert box.left <= left and right <= box.left + box.width
        assert box.top <= top and bottom <= box.top + box.height
    drawn = "".join(line.rstrip("…") for _, _, line in fitted.lines).replace(" ", "")
    assert text.replace(" ", "").startswith(drawn)
    if len(text) > 500:
        assert fitted.lines[-1][2].endswith("…")


def test_short_titles_are_set_larger_than_long_ones():
    box = Box(0, 0, 1104, 208)
    assert fit_text("Short", box, max_size=57, min_size=28, bold=True, max_lines=3).font.size == 57
    assert fit_text(TITLE * 3, box, max_size=57, min_size=28, bold=True, max_lines=3).font.size < 57


def test_without_system_fonts_pillows_own_font_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(cards, "FONT_DIRS", ())
    cards.load_font.cache_clear()
    try:
        assert "DejaVu" not in cards.load_font(40, bold=True).getname()[0]
        path = render_background(tmp_path / "card.png", title=TITLE, show=SHOW)
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        assert (region(pixels, card_layout(1280, 720).title).min(axis=2) > 200).mean() > 0.02
    finally:
        cards.load_font.cache_clear()


@pytest.mark.parametrize("size", [1400, 3000])
def test_cover_art_is_square_at_the_asked_size(tmp_path, size):
    path = render_cover(tmp_path / "cover.png", title=TITLE, show=SHOW, size=size)
    with Image.open(path) as image:
        assert (image.size, image.mode) == ((size, size), "RGB")
        pixels = np.asarray(image, dtype=np.int16)
    lower = pixels[int(size * 0.57) : int(size * 0.92)]
    assert (lower.min(axis=2) > 200).mean() > 0.03  # the title is drawn


def test_cover_art_default_size_and_limits(tmp_path):
    with Image.open(render_cover(tmp_path / "cover.png", title="T", show="S")) as image:
        assert image.size == (1400, 1400)
    for size in (1399, 3001):
        with pytest.raises(ConfigError) as caught:
            render_cover(tmp_path / "bad.png", title="T", show="S", size=size)
        assert caught.value.field == "cover_size"
    assert not (tmp_path / "bad.png").exists()


def test_keyframes_at_most_every_two_seconds(hd_render):
    from podforge.media.encoders import KEYFRAME_INTERVAL_S

    _, result = hd_render
    with av.open(str(result.video)) as container:
        stream = container.streams.video[0]
        times = [float(packet.pts * stream.time_base) for packet in container.demux(stream) if packet.pts is not None and packet.is_keyframe]
    times = sorted(times) + [6.0]
    assert max(later - earlier for earlier, later in zip(times, times[1:])) <= KEYFRAME_INTERVAL_S + 1e-6


@pytest.mark.parametrize(("cpus", "setting", "expected"), [(2, None, 4), (1, None, 2), (16, None, 8), (2, 3, 3)])
def test_the_encoder_keeps_two_frames_in_flight_per_cpu_unless_told(tmp_path, monkeypatch, cpus, setting, expected):
    """One ffmpeg thread draws the waveform and captions; with one x264 frame thread per core the cores wait
    on it. The real render runs; its ffmpeg call is read for the threads it asked for."""
    import podforge.engines.audiogram as audiogram

    asked: list[object] = []
    real_run_graph = audiogram.run_graph

    def spy(graph, **kwargs):
        arguments = graph.get_args()
        asked.append(arguments[arguments.index("-threads") + 1])
        return real_run_graph(graph, **kwargs)

    monkeypatch.setattr(audiogram, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(audiogram, "run_graph", spy)
    request = make_request(tmp_path, width=320, height=180, duration_s=1.0)
    result = AudiogramEngine({"threads": setting} if setting else None).run(request, tmp_path / "work")
    assert asked == [str(expected)]
    assert result.frames == 25


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1400, 1400), (3000, 3000), (322, 180)])
def test_the_enlarged_gradient_is_within_one_level_of_the_exact_one(width, height):
    """Cards and covers enlarge a gradient computed on a coarse grid: it must look the same as one computed
    at every pixel, accent glow included."""
    palette = cards.palette_for("Podforge Bench")
    fast = np.asarray(cards.gradient(width, height, palette)).astype(int)
    exact = np.asarray(cards.shade(np.linspace(0.0, 1.0, width), np.linspace(0.0, 1.0, height), width / height, palette)).astype(int)
    assert fast.shape == exact.shape == (height, width, 3)
    assert np.abs(fast - exact).max() <= 1
