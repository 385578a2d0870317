"""The offline talking portrait, on a real photograph, with real Piper speech, encoded by the real ffmpeg.

The photograph is ``skimage.data.astronaut()`` (NASA, public domain, shipped by scikit-image). Motion
is measured on the decoded MP4 by :mod:`podforge.media.lipsync`, in the mouth region found by the landmark
detector on the first decoded frame (more photographs in ``test_lipsync.py``).
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from podforge.engines.base import AvatarRequest, SpeechRequest
from podforge.engines.portrait import PortraitEngine, frame_average, viseme_targets
from podforge.config import load_config
from podforge.engines.registry import resolve_engine
from podforge.errors import EngineError, ScriptError
from podforge.media.ffmpeg import probe, run_ffmpeg
from podforge.timing import PhonemeTiming, SpeakerAlignment, SpeakerTurn, TimedLine, alignment_for, turns_from_lines
from podforge.media.layout import HIGHLIGHT_RGB, RawVideoWriter, compose_layout, frame_count, host_video_size, tile_rectangles
from podforge.media.lipsync import mouth_motion as measured_mouth_motion
from podforge.media.lipsync import pearson, speech_rms
from podforge.media.portraits import MAX_WORKING_SIDE, detect_face, load_portrait

skimage_data = pytest.importorskip("skimage.data")

SPEECH_TEXT = "Let us start with money. A T4 card in the cloud rents for about fifty-three cents an hour. An A10G is about a dollar an hour!"
MIN_CORRELATION = 0.5
"""Mouth motion vs speech energy. Measured here: about 0.8 with phonemes, 0.9 from energy alone."""


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("portraits") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def tinted_astronaut(tmp_path_factory) -> Path:
    """A second host: the same photo mirrored, with red and blue swapped (a blue suit)."""
    path = tmp_path_factory.mktemp("portraits") / "astronaut-blue.png"
    Image.fromarray(np.ascontiguousarray(skimage_data.astronaut()[:, ::-1, ::-1])).save(path)
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from podforge.engines.piper import PiperEngine

    workdir = tmp_path_factory.mktemp("speech")
    return PiperEngine().run(SpeechRequest(text=SPEECH_TEXT), workdir)


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def gray(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def mouth_motion(frames: list[np.ndarray]) -> np.ndarray:
    """Mouth-region motion per frame, head motion taken out (the measurement of :mod:`podforge.media.lipsync`)."""
    return measured_mouth_motion(frames)[0]


def render(portrait: Path, audio: Path, duration_s: float, workdir: Path, *, phonemes=(), intervals=(), size=(512, 512), speaker="ALEX", settings=None, offset=0.0):
    request = AvatarRequest(
        speaker=speaker,
        portrait=portrait,
        audio=audio,
        audio_offset_s=offset,
        alignment=SpeakerAlignment(phonemes=list(phonemes), intervals=list(intervals)),
        duration_s=duration_s,
        width=size[0],
        height=size[1],
        encoder_options={"preset": "veryfast", "crf": "20"},
    )
    workdir.mkdir(parents=True, exist_ok=True)
    return PortraitEngine(settings or {}).run(request, workdir)


@pytest.mark.parametrize("driven_by", ["phonemes", "energy"])
def test_mouth_motion_follows_speech_energy_on_a_real_photograph(astronaut, speech, tmp_path, driven_by, record_property):
    duration = speech.duration_s + 0.4
    phonemes = speech.alignment.phonemes if driven_by == "phonemes" else ()
    result = render(astronaut, speech.wav, duration, tmp_path / driven_by, phonemes=phonemes)

    info = probe(result.video)
    video = info.streams[0]
    assert (video.codec, video.width, video.height, video.fps) == ("h264", 512, 512, 25.0)
    assert [s.kind for s in info.streams] == ["video"]
    assert result.notes["lip_sync_check"] == "pass" and result.notes["face_detector"].startswith("mtcnn")
    frames = decode(result.video)
    assert len(frames) == result.frames == frame_count(duration, 25)

    motion = mouth_motion(frames)
    energy = speech_rms(speech.wav, 25, len(frames))
    correlation = pearson(motion, energy)
    shifted = pearson(motion, np.roll(energy, 25))
    record_property(f"mouth_energy_correlation_{driven_by}", round(correlation, 3))
    print(f"\nmouth motion vs speech RMS ({driven_by}): r = {correlation:.3f}; against speech shifted by 1 s: r = {shifted:.3f}")
    assert correlation >= MIN_CORRELATION
    assert shifted < 0.3, "the motion must follow this speech in time, not just move"
    assert motion[energy < 0.01 * energy.max()].mean() < 0.45 * motion[energy > 0.3 * energy.max()].mean()


def test_a_still_picture_fails_the_correlation_threshold(astronaut, speech, tmp_path):
    still = tmp_path / "still.mp4"
    frames_wanted = frame_count(speech.duration_s + 0.4, 25)
    run_ffmpeg(
        ["-y", "-loop", "1", "-framerate", "25", "-i", str(astronaut), "-frames:v", str(frames_wanted), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(still)],
        what="encoding a still portrait",
    )
    frames = decode(still)
    correlation = pearson(mouth_motion(frames), speech_rms(speech.wav, 25, len(frames)))
    assert correlation < MIN_CORRELATION


def test_eyes_blink_and_the_head_moves_while_silent(astronaut, tmp_path):
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(12 * 16000, dtype=np.float32), 16000)
    result = render(astronaut, silence, 12.0, tmp_path / "idle", size=(256, 256))
    frames = decode(result.video)
    face = detect_face(frames[0])
    assert face is not None
    eyes = [face.left_eye, face.right_eye]
    x0, x1 = int(min(e.x for e in eyes)), int(max(e.x + e.w for e in eyes))
    y0, y1 = int(min(e.y for e in eyes) - 2), int(max(e.y + e.h for e in eyes) + 2)
    mouth = face.mouth

    # A blink changes the eye band far more than the slow head motion between neighbouring frames does.
    eye_band = [gray(frame)[y0:y1, x0:x1] for frame in frames]
    eye_change = np.array([0.0] + [np.abs(b - a).mean() for a, b in zip(eye_band, eye_band[1:])])
    blink_frames = np.flatnonzero(eye_change > 4 * np.median(eye_change) + 1.0)
    blinks = [group for group in np.split(blink_frames, np.flatnonzero(np.diff(blink_frames) > 5) + 1) if group.size]
    starts_s = [group[0] / 25 for group in blinks]
    assert 2 <= len(blinks) <= 6, f"expected a blink every 3-5 s over 12 s, found them at {starts_s}"
    assert all(b - a >= 2.0 for a, b in zip(starts_s, starts_s[1:]))

    # The head moves (the picture is never frozen) but only slightly (no jumps between frames).
    whole = [gray(frame) for frame in frames]
    step = np.array([np.abs(b - a).mean() for a, b in zip(whole, whole[1:])])
    drift = np.abs(whole[-1] - whole[0]).mean()
    assert drift > 0.5 and step.max() < 6.0

    # Silence keeps the mouth shut: its region changes no more than the whole head's motion does.
    mouth_region = [g[int(mouth.y) : int(mouth.y + mouth.h), int(mouth.x) : int(mouth.x + mouth.w)] for g in whole]
    mouth_step = np.array([np.abs(b - a).mean() for a, b in zip(mouth_region, mouth_region[1:])])
    assert mouth_step.max() < 6.0


def test_memory_stays_flat_in_the_episode_length(astronaut, tmp_path):
    silence = tmp_path / "quiet.wav"
    soundfile.write(silence, np.zeros(20 * 8000, dtype=np.float32), 8000)
    peaks = {}
    for seconds in (5.0, 20.0):
        tracemalloc.start()
        render(astronaut, silence, seconds, tmp_path / f"len{seconds:g}", size=(128, 128), settings={"blinks": True})
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[20.0] < 1.25 * peaks[5.0], f"peak traced memory grew with length: {peaks}"


# --- bad portraits -----------------------------------------------------------------------------------


def assert_names_host_and_file(error: ScriptError, path: Path) -> None:
    assert error.field == "hosts.SAM.portrait"
    assert error.file == str(path)
    assert "SAM" in str(error) and str(path) in str(error)


def test_not_an_image(tmp_path):
    path = tmp_path / "sam.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ScriptError, match="not a readable image") as caught:
        load_portrait(path, "SAM")
    assert_names_host_and_file(caught.value, path)


def test_truncated_image(tmp_path, astronaut):
    path = tmp_path / "sam.jpg"
    Image.open(astronaut).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ScriptError, match="damaged or truncated") as caught:
        load_portrait(path, "SAM")
    assert_names_host_and_file(caught.value, path)


def test_one_pixel_image(tmp_path):
    path = tmp_path / "sam.png"
    Image.new("RGB", (1, 1), (200, 150, 120)).save(path)
    with pytest.raises(ScriptError, match="1×1 px") as caught:
        load_portrait(path, "SAM")
    assert_names_host_and_file(caught.value, path)


def test_image_without_a_face(tmp_path):
    path = tmp_path / "sam.png"
    Image.fromarray(skimage_data.coffee()).save(path)
    with pytest.raises(ScriptError, match="no face found") as caught:
        load_portrait(path, "SAM")
    assert_names_host_and_file(caught.value, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nobody.png"
    with pytest.raises(ScriptError, match="does not exist") as caught:
        load_portrait(path, "SAM")
    assert_names_host_and_file(caught.value, path)


def test_huge_image_is_downscaled_and_left_unchanged(tmp_path):
    path = tmp_path / "sam.jpg"
    canvas = Image.new("RGB", (9000, 9000), (205, 200, 196))
    canvas.paste(Image.fromarray(skimage_data.astronaut()).resize((4000, 4000), Image.Resampling.BILINEAR), (2500, 2000))
    canvas.save(path, quality=85)
    del canvas
    before = path.read_bytes()
    portrait = load_portrait(path, "SAM")
    assert portrait.original_size == (9000, 9000)
    assert max(portrait.rgb.shape[:2]) <= MAX_WORKING_SIDE and portrait.downscaled
    # The face found in the working copy is where the astronaut's face is in the big picture
    # (at 512 px her face box is centred near (223, 113); the photo was pasted 7.8 times larger).
    scale = 9000 / portrait.rgb.shape[1]
    assert portrait.face.face.cx * scale == pytest.approx(2500 + 223 * 4000 / 512, abs=300)
    assert portrait.face.face.cy * scale == pytest.approx(2000 + 113 * 4000 / 512, abs=300)
    assert path.read_bytes() == before


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width``×``height`` but holds almost no pixel data (cheap to make)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [13000, 16000])
def test_images_beyond_the_size_limit_are_refused_before_decoding(tmp_path, side):
    path = png_header_only(tmp_path / "sam.png", side, side)
    with pytest.raises(ScriptError, match="over 150 megapixels") as caught:
        load_portrait(path, "SAM")
    assert_names_host_and_file(caught.value, path)


def test_transparent_portrait_is_flattened_on_grey(tmp_path):
    path = tmp_path / "sam.png"
    rgba = np.dstack([skimage_data.astronaut(), np.full((512, 512), 255, np.uint8)])
    rgba[:40, :, 3] = 0
    Image.fromarray(rgba).save(path)
    portrait = load_portrait(path, "SAM")
    assert portrait.rgb.shape == (512, 512, 3)
    assert np.allclose(portrait.rgb[:40].reshape(-1, 3).mean(axis=0), 128, atol=1)


# --- visemes -----------------------------------------------------------------------------------------


def test_frame_average_is_an_exact_box_filter():
    segments = [(0.0, 0.02, 1.0), (0.02, 0.06, 0.5), (0.10, 0.12, 1.0)]
    averaged = frame_average(segments, fps=25, frames=4)  # frames of 40 ms
    assert averaged == pytest.approx([(0.02 * 1.0 + 0.02 * 0.5) / 0.04, (0.02 * 0.5) / 0.04, 0.02 / 0.04, 0.0])


def test_visemes_close_lips_on_m_and_open_on_a():
    timings = [PhonemeTiming(phoneme=p, start_s=i * 0.1, end_s=(i + 1) * 0.1) for i, p in enumerate(["m", "ˈ", "a", "ː", " ", "u", "."])]
    values = {round(start, 1): (openness, width) for start, _, openness, width in viseme_targets(timings)}
    assert values[0.0][0] == 0.0  # m: lips pressed
    assert values[0.1] == values[0.2]  # a stress mark takes the next sound's shape
    assert values[0.3] == values[0.2]  # a length mark holds the previous one
    assert values[0.2][0] > 0.8 and values[0.5][1] < -0.5  # a: open; u: rounded
    assert 0 < values[0.4][0] < values[0.2][0]  # between words the lips relax
    assert values[0.6] == (0.0, 0.0)  # punctuation: rest


def test_other_hosts_lines_keep_the_mouth_still(astronaut, speech, tmp_path):
    """The whole dialogue track as audio, but this host speaks only in the second half: no motion before."""
    half = speech.duration_s / 2
    result = render(astronaut, speech.wav, speech.duration_s, tmp_path / "half", intervals=[(half, speech.duration_s)], size=(256, 256), settings={"head_motion": 0})
    motion = mouth_motion(decode(result.video))
    split = int(half * 25)
    assert motion[: split - 2].max() < 0.25 * motion[split + 2 :].max()


# --- two hosts: the layout -----------------------------------------------------------------------------


ALEX, SAM = 0, 1  # the hosts' positions in the cast


def line(host: int, start_s: float, end_s: float) -> TimedLine:
    return TimedLine(index=0, host=host, text="", chapter=0, start_s=start_s, end_s=end_s)


LINES = [line(ALEX, 0.3, 1.5), line(SAM, 1.9, 2.9), line(SAM, 3.1, 3.4), line(ALEX, 3.62, 4.2)]
DURATION = 4.8


def test_turns_change_at_the_start_of_another_hosts_line():
    turns = turns_from_lines(LINES, DURATION)
    assert [(t.host, t.start_s, t.end_s) for t in turns] == [(ALEX, 0.0, 1.9), (SAM, 1.9, 3.62), (ALEX, 3.62, DURATION)]
    assert alignment_for(SAM, LINES).intervals == [(1.9, 2.9), (3.1, 3.4)]


@pytest.fixture(scope="module")
def host_videos(astronaut, tinted_astronaut, speech, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hosts")
    side = host_video_size("side_by_side", 2, 640, 360)
    videos = []
    for host, (speaker, portrait) in enumerate((("ALEX", astronaut), ("SAM", tinted_astronaut))):
        intervals = [(line.start_s, line.end_s) for line in LINES if line.host == host]
        result = render(portrait, speech.wav, DURATION, workdir / speaker, intervals=intervals, size=side, speaker=speaker)
        videos.append(result.video)
    return videos


def boundary_frames(turns: list[SpeakerTurn], fps: int) -> list[tuple[int, int, int]]:
    """(first frame of a turn, host before, host after) for every switch."""
    return [(math.floor(round(b.start_s * fps, 6)), a.host, b.host) for a, b in zip(turns, turns[1:])]


def test_side_by_side_highlights_the_speaker_from_the_frame_their_line_starts(host_videos, tmp_path):
    turns = turns_from_lines(LINES, DURATION)
    out = tmp_path / "side.mp4"
    written = compose_layout(host_videos, turns, out, duration_s=DURATION, width=640, height=360, mode="side_by_side")
    frames = decode(out)
    assert len(frames) == written.frames == frame_count(DURATION, 25)
    assert (written.encoder, written.encoder_fallback) == ("libx264", None)
    tiles = dict(enumerate(tile_rectangles(2, 640, 360)))

    def highlighted(frame: np.ndarray) -> int:
        lit = []
        for speaker, (x, y, w, h) in tiles.items():
            top_edge = frame[y + 1 : y + 3, x + 10 : x + w - 10].reshape(-1, 3).astype(float).mean(axis=0)
            if np.abs(top_edge - HIGHLIGHT_RGB).max() < 30:
                lit.append(speaker)
        assert len(lit) == 1, f"exactly one tile must be highlighted, got {lit}"
        return lit[0]

    def brightness(frame: np.ndarray, speaker: int) -> float:
        x, y, w, h = tiles[speaker]
        return float(frame[y + 20 : y + h - 20, x + 20 : x + w - 20].mean())

    switches = boundary_frames(turns, 25)
    assert [s[0] for s in switches] == [47, 90]  # 1.9 s falls in frame 47 (1.88-1.92 s), 3.62 s in frame 90
    for first, before, after in switches:
        assert highlighted(frames[first - 1]) == before
        assert highlighted(frames[first]) == after
        assert brightness(frames[first], after) > 1.5 * brightness(frames[first], before)


def test_cut_layout_shows_the_speaker_from_the_frame_their_line_starts(host_videos, tmp_path):
    turns = turns_from_lines(LINES, DURATION)
    size = host_video_size("cut", 2, 320, 320)
    assert size == (320, 320)
    out = tmp_path / "cut.mp4"
    compose_layout(host_videos, turns, out, duration_s=DURATION, width=320, height=320, mode="cut")
    frames = decode(out)
    sources = {host: decode(path) for host, path in enumerate(host_videos)}

    def shown(index: int) -> int:
        frame = frames[index].astype(float)
        # Host videos are square and smaller here, so compare on a common small size.
        distances = {}
        for speaker, video in sources.items():
            reference = np.asarray(Image.fromarray(video[index]).resize(frame.shape[1::-1]), dtype=float)
            distances[speaker] = np.abs(frame - reference).mean()
        best = min(distances, key=distances.get)
        assert distances[best] < 0.5 * max(distances.values())
        return best

    for first, before, after in boundary_frames(turns, 25):
        assert shown(first - 1) == before
        assert shown(first) == after
    assert shown(0) == ALEX and shown(len(frames) - 1) == ALEX


def test_a_host_video_shorter_than_the_episode_holds_its_last_frame(host_videos, tmp_path):
    short = tmp_path / "short.mp4"
    run_ffmpeg(["-y", "-i", str(host_videos[SAM]), "-frames:v", "10", "-c:v", "libx264", str(short)], what="cutting a host video short")
    turns = [SpeakerTurn(host=0, start_s=0.0, end_s=2.0)]
    out = tmp_path / "held.mp4"
    compose_layout([short], turns, out, duration_s=2.0, width=256, height=256, mode="cut")
    frames = decode(out)
    assert len(frames) == 50
    assert np.abs(frames[-1].astype(float) - frames[12].astype(float)).mean() < 1.0


def test_the_layout_refuses_a_turn_without_a_video(host_videos, tmp_path):
    with pytest.raises(EngineError, match="no video for host.* 3 in the layout"):
        compose_layout(host_videos, [SpeakerTurn(host=2, start_s=0, end_s=1)], tmp_path / "x.mp4", duration_s=1.0)


def test_a_failing_encoder_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(EngineError, match="no_such_encoder"):
        with RawVideoWriter(out, 64, 64, 25, encoder="no_such_encoder") as writer:
            for _ in range(60):
                writer.write(np.zeros((64, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_the_config_registers_both_avatar_engines():
    config = load_config()
    portrait = resolve_engine(config, "portrait", "avatar")
    assert (portrait.resources.device, portrait.resources.env) == ("cpu", None)
    sadtalker = resolve_engine(config, "sadtalker", "avatar")
    assert (sadtalker.resources.device, sadtalker.resources.env) == ("cuda", "sadtalker")


def test_the_layout_burns_in_the_episode_captions(host_videos, tmp_path):
    ass = tmp_path / "captions.ass"
    ass.write_text(
        "[Script Info]\nScriptType: v4.00+\nPlayResX: 320\nPlayResY: 320\n\n"
        "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, BackColour, BorderStyle, Outline, Shadow, Alignment, MarginV\n"
        "Style: Default,DejaVu Sans,40,&H00FFFFFF,&H00000000,3,8,0,2,10\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Text\n"
        "Dialogue: 0,0:00:01.00,0:00:02.00,Default,HELLO THERE\n",
        encoding="utf-8",
    )
    turns = turns_from_lines(LINES, DURATION)
    plain, captioned = tmp_path / "plain.mp4", tmp_path / "captioned.mp4"
    for out, captions in ((plain, None), (captioned, ass)):
        compose_layout(host_videos, turns, out, duration_s=DURATION, width=320, height=320, mode="cut", captions_ass=captions)
    without, with_captions = decode(plain), decode(captioned)
    bottom = slice(230, 320)
    changed = [np.abs(a[bottom].astype(float) - b[bottom].astype(float)).mean() for a, b in zip(without, with_captions)]
    # 1.08-1.92 s: the caption is on screen; before and after it only the colour conversion differs.
    assert min(changed[27:48]) > 5.0
    assert max(changed[:23] + changed[52:]) < 3.0 and min(changed[27:48]) > 2.5 * max(changed[:23] + changed[52:])
