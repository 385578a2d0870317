"""Choosing the H.264 encoder, tested against ffmpeg output recorded on a machine without a GPU."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from podforge.errors import EngineError
from podforge.media import layout
from podforge.media.encoders import choose_h264_encoder, decide, keyframe_options, parse_encoders, probe_error_line, probe_nvenc
from podforge.media.ffmpeg import ffmpeg_exe, probe
from podforge.media.layout import RawVideoWriter

DATA = Path(__file__).parent / "data" / "encoders"
LISTING_WITH_NVENC = (DATA / "imageio-ffmpeg-9.0.2-encoders.txt").read_text()
LISTING_WITHOUT_NVENC = (DATA / "derived-encoders-without-nvenc.txt").read_text()
PROBE_NO_LIBCUDA = (DATA / "nvenc-probe-no-libcuda.stderr.txt").read_text()
HAS_NVIDIA_DEVICE = Path("/dev/nvidiactl").exists()


def test_parse_encoders_reads_every_listed_encoder_and_no_legend():
    listed = parse_encoders(LISTING_WITH_NVENC)
    entries = LISTING_WITH_NVENC.split("------", 1)[1].strip().splitlines()
    assert len(listed) == len(entries) > 200
    assert {"libx264", "h264_nvenc", "hevc_nvenc", "aac", "libmp3lame", "ass"} <= listed
    assert "=" not in listed and "Video" not in listed


def test_parse_encoders_of_a_build_without_nvenc():
    listed = parse_encoders(LISTING_WITHOUT_NVENC)
    assert "libx264" in listed
    assert not any("nvenc" in name for name in listed)
    assert listed == parse_encoders(LISTING_WITH_NVENC) - {"h264_nvenc", "hevc_nvenc", "av1_nvenc"}


def test_parse_encoders_of_text_that_is_no_listing():
    assert parse_encoders("") == set()
    assert parse_encoders("ffmpeg: error while loading shared libraries") == set()


def test_probe_error_line_is_nvencs_own_message():
    assert probe_error_line(PROBE_NO_LIBCUDA) == "Cannot load libcuda.so.1"


def test_probe_error_line_without_an_nvenc_message_takes_the_first_error():
    others = "\n".join(line for line in PROBE_NO_LIBCUDA.splitlines() if "[h264_nvenc @" not in line)
    assert probe_error_line(others).endswith("Error while opening encoder - maybe incorrect parameters such as bit_rate, rate, width or height.")
    assert probe_error_line("") == "no output"


def test_configured_libx264_uses_its_preset_and_crf():
    choice = decide("libx264", parse_encoders(LISTING_WITH_NVENC), None, x264_preset="faster", crf=20)
    assert choice.name == "libx264"
    assert choice.options == {"preset": "faster", "crf": "20", **keyframe_options()}
    assert "configured" in choice.reason


def test_auto_uses_nvenc_when_the_probe_encode_succeeds():
    choice = decide("auto", parse_encoders(LISTING_WITH_NVENC), True, "", crf=21)
    assert choice.name == "h264_nvenc"
    assert choice.options == {"preset": "p4", "rc": "vbr", "cq": "21", "b:v": "0", **keyframe_options()}
    assert "succeeded" in choice.reason


def test_auto_falls_back_to_libx264_quoting_the_probe_error():
    choice = decide("auto", parse_encoders(LISTING_WITH_NVENC), False, PROBE_NO_LIBCUDA)
    assert choice.name == "libx264"
    assert choice.options == {"preset": "veryfast", "crf": "23", **keyframe_options()}
    assert "Cannot load libcuda.so.1" in choice.reason
    assert "requested" not in choice.reason


def test_auto_without_nvenc_in_the_build_uses_libx264():
    choice = decide("auto", parse_encoders(LISTING_WITHOUT_NVENC), None)
    assert choice.name == "libx264"
    assert "does not list h264_nvenc" in choice.reason


def test_requested_nvenc_that_fails_falls_back_and_says_it_was_requested():
    choice = decide("h264_nvenc", parse_encoders(LISTING_WITH_NVENC), False, PROBE_NO_LIBCUDA)
    assert choice.name == "libx264"
    assert "requested" in choice.reason and "falling back" in choice.reason
    assert "Cannot load libcuda.so.1" in choice.reason


def test_requested_nvenc_missing_from_the_build_falls_back_and_says_so():
    choice = decide("h264_nvenc", parse_encoders(LISTING_WITHOUT_NVENC), None)
    assert choice.name == "libx264"
    assert "requested" in choice.reason and "does not list" in choice.reason


def test_requested_nvenc_that_works_is_used():
    assert decide("h264_nvenc", parse_encoders(LISTING_WITH_NVENC), True).name == "h264_nvenc"


@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="an NVIDIA device is present: the probe may succeed")
def test_real_probe_on_a_machine_without_gpu_chooses_libx264_and_says_why():
    choice = choose_h264_encoder("auto")
    assert choice.name == "libx264"
    assert "probe encode failed" in choice.reason
    assert probe_error_line(probe_nvenc(ffmpeg_exe()).stderr) in choice.reason

    hits = probe_nvenc.cache_info().hits
    assert choose_h264_encoder("auto") == choice
    assert probe_nvenc.cache_info().hits == hits + 1  # memoised: the probe ran once for this binary


@pytest.mark.skipif(not HAS_NVIDIA_DEVICE, reason="needs an NVIDIA GPU and driver")
def test_real_probe_on_a_gpu_machine_chooses_nvenc():
    choice = choose_h264_encoder("auto")
    assert choice.name == "h264_nvenc", choice.reason


def test_configured_libx264_runs_no_ffmpeg():
    assert choose_h264_encoder("libx264", "/nonexistent/ffmpeg").name == "libx264"


def test_auto_with_a_missing_binary_names_the_config_field():
    with pytest.raises(EngineError) as caught:
        choose_h264_encoder("auto", "/nonexistent/ffmpeg")
    assert caught.value.field == "ffmpeg"
    assert "/nonexistent/ffmpeg" in str(caught.value)


def test_the_nvenc_probe_uses_the_options_of_the_real_encodes():
    from podforge.media.encoders import _nvenc_probe_args, encoder_options

    args = _nvenc_probe_args()
    assert args[args.index("-c:v") + 1] == "h264_nvenc"
    for key, value in encoder_options("h264_nvenc").items():  # -preset p4 -rc vbr -cq 23 -b:v 0
        assert args[args.index(f"-{key}") + 1] == value


NVENC_WORKS = probe_nvenc(ffmpeg_exe()).ok
needs_failing_nvenc = pytest.mark.skipif(NVENC_WORKS, reason="h264_nvenc works on this machine, so it cannot be seen failing")


@needs_failing_nvenc
def test_a_failed_nvenc_encode_is_redone_with_libx264_and_the_reason_kept(tmp_path):
    """Real ffmpeg and a real failure: there is no NVIDIA driver here, so an h264_nvenc encode fails."""
    from podforge.media.encoders import with_nvenc_fallback
    from podforge.media.ffmpeg import run_ffmpeg

    def encode(encoder: str, options: dict[str, str]) -> Path:
        out = tmp_path / f"{encoder}.mp4"
        flags = [part for key, value in options.items() for part in (f"-{key}", value)]
        run_ffmpeg(["-y", "-f", "lavfi", "-i", "color=size=64x64:duration=0.2:rate=25", "-pix_fmt", "yuv420p", "-c:v", encoder, *flags, str(out)], what=f"a test encode with {encoder}")
        return out

    from podforge.media.encoders import encoder_options

    video, encoder, reason = with_nvenc_fallback(encode, "h264_nvenc", encoder_options("h264_nvenc"))
    assert encoder == "libx264" and video.name == "libx264.mp4" and video.stat().st_size > 0
    assert reason is not None and reason.startswith("h264_nvenc failed (") and reason.endswith("encoded with libx264 instead")
    same, encoder, reason = with_nvenc_fallback(encode, "libx264", encoder_options("libx264"))
    assert (encoder, reason) == ("libx264", None)


# --- RawVideoWriter (the talking portraits and the layout): the same fallback while frames stream in -----


def numbered_frames(count: int, size: int = 64) -> list[np.ndarray]:
    """Flat grey frames whose level says their number modulo 30 (7 levels apart, so H.264 keeps them apart)."""
    return [np.full((size, size, 3), 16 + 7 * (number % 30), dtype=np.uint8) for number in range(count)]


def decoded_levels(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [round((float(frame.to_ndarray(format="gray").mean()) - 16) / 7) for frame in container.decode(video=0)]


@needs_failing_nvenc
@pytest.mark.parametrize("count", [1, 30])
def test_raw_frames_for_a_failed_nvenc_encode_are_encoded_again_with_libx264(tmp_path, count):
    """A real NVENC failure (no NVIDIA driver here): with 30 frames ffmpeg stops reading mid-stream, with
    one frame it fails only when the writer closes; either way every frame reaches the libx264 video."""
    out = tmp_path / "video.mp4"
    with RawVideoWriter(out, 64, 64, 25, encoder="h264_nvenc") as writer:
        for frame in numbered_frames(count):
            writer.write(frame)
    assert writer.encoder == "libx264" and writer.frames == count
    assert writer.fallback is not None and writer.fallback.startswith("h264_nvenc failed (") and writer.fallback.endswith("encoded with libx264 instead")
    assert "libcuda" in writer.fallback or "CUDA" in writer.fallback or "device" in writer.fallback  # NVENC's own reason
    assert probe(out).streams[0].codec == "h264"
    assert decoded_levels(out) == list(range(count))


@needs_failing_nvenc
def test_an_nvenc_failure_after_the_kept_frames_were_dropped_is_an_error_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "NVENC_REPLAY_BYTES", 64 * 64 * 3)  # keep one frame only
    out = tmp_path / "video.mp4"
    with pytest.raises(EngineError, match=r"ffmpeg \(h264_nvenc\) stopped after"):
        with RawVideoWriter(out, 64, 64, 25, encoder="h264_nvenc") as writer:
            for frame in numbered_frames(200):
                writer.write(frame)
    assert writer.fallback is None and not out.exists()


def test_libx264_keeps_no_frames_and_reports_no_fallback(tmp_path):
    out = tmp_path / "video.mp4"
    with RawVideoWriter(out, 64, 64, 25) as writer:
        for frame in numbered_frames(5):
            writer.write(frame)
    assert (writer.encoder, writer.fallback, writer._kept) == ("libx264", None, None)
    assert decoded_levels(out) == list(range(5))
