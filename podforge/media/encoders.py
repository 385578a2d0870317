"""Which H.264 encoder renders the video: NVENC when it really works here, else libx264.

An ffmpeg build can list ``h264_nvenc`` without being able to use it (no NVIDIA driver, no GPU, a driver
too old for the build's NVENC API), so listing is not enough: a tiny probe encode decides. The decision
itself is pure (:func:`parse_encoders`, :func:`decide`) so it can be tested with recorded ffmpeg output;
:func:`choose_h264_encoder` runs the two ffmpeg commands once per binary and applies it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, TypeVar

from pydantic import BaseModel

from podforge.errors import EngineError
from podforge.media.ffmpeg import ffmpeg_exe

EncoderPreference = Literal["auto", "h264_nvenc", "libx264"]
H264Encoder = Literal["h264_nvenc", "libx264"]

T = TypeVar("T")


def _nvenc_probe_args() -> list[str]:
    """A fifth of a second of a flat colour through h264_nvenc with the options the real encodes use."""
    options = [part for key, value in encoder_options("h264_nvenc").items() for part in (f"-{key}", value)]
    return ["-f", "lavfi", "-i", "color=size=256x256:duration=0.2:rate=25", "-pix_fmt", "yuv420p", "-c:v", "h264_nvenc", *options, "-f", "null", "-"]

PROBE_TIMEOUT_S = 30.0
DEFAULT_X264_PRESET = "veryfast"
DEFAULT_CRF = 23
KEYFRAME_INTERVAL_S = 2
"""At most this many seconds between keyframes in every H.264 encode, so players seek finely."""

_ENCODER_LINE = re.compile(r"^\s*[VAS][.A-Z]{5}\s+(?P<name>\S+)")
_NVENC_MESSAGE = re.compile(r"^\[h264_nvenc @ [^\]]+\]\s*(?P<message>.+)$")


class EncoderChoice(BaseModel):
    """The encoder to use, its ffmpeg output options, and why it was chosen (for logs and the manifest)."""

    name: H264Encoder
    options: dict[str, str]
    reason: str

    def __cache_content__(self) -> dict:
        """What changes the picture: the encoder and its options, not the words of the reason."""
        return {"name": self.name, "options": self.options}


class NvencProbe(BaseModel):
    ok: bool
    stderr: str


def encoder_options(name: H264Encoder, *, x264_preset: str = DEFAULT_X264_PRESET, crf: int = DEFAULT_CRF) -> dict[str, str]:
    """ffmpeg output options for ``name`` at a comparable quality (NVENC's ``cq`` follows ``crf``), with
    a keyframe at least every :data:`KEYFRAME_INTERVAL_S` seconds."""
    if name == "h264_nvenc":
        return {"preset": "p4", "rc": "vbr", "cq": str(crf), "b:v": "0", **keyframe_options()}
    return {"preset": x264_preset, "crf": str(crf), **keyframe_options()}


def encoder_options_for(encoder: str) -> dict[str, str]:
    """Default options for a known H.264 encoder; none (ffmpeg's defaults) for any other."""
    return encoder_options(encoder) if encoder in ("libx264", "h264_nvenc") else {}


def keyframe_options() -> dict[str, str]:
    """A keyframe every :data:`KEYFRAME_INTERVAL_S` seconds of output time, whatever the frame rate.

    ``force_key_frames`` is evaluated by ffmpeg on each frame's timestamp; ``forced-idr`` makes the
    forced frames IDR frames (which MP4 marks as sync samples) for libx264 and h264_nvenc alike.
    """
    return {"force_key_frames": f"expr:gte(t,n_forced*{KEYFRAME_INTERVAL_S})", "forced-idr": "1"}


def parse_encoders(text: str) -> set[str]:
    """Encoder names from ``ffmpeg -encoders`` output (the lines after the ``------`` separator)."""
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.strip() == "------"]
    if not starts:
        return set()
    return {match["name"] for line in lines[starts[0] + 1 :] if (match := _ENCODER_LINE.match(line))}


def probe_error_line(stderr: str) -> str:
    """The line of a failed probe's log that says why: NVENC's own message, else the first error."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if match := _NVENC_MESSAGE.match(line):
            return match["message"]
    errors = [line for line in lines if "rror" in line]
    if errors:
        return errors[0]
    return lines[-1] if lines else "no output"


def decide(
    preference: EncoderPreference,
    listed: set[str],
    probe_ok: bool | None,
    probe_stderr: str = "",
    *,
    x264_preset: str = DEFAULT_X264_PRESET,
    crf: int = DEFAULT_CRF,
) -> EncoderChoice:
    """Choose from what ffmpeg lists and how the probe went (``probe_ok`` is None when no probe ran)."""

    def x264(reason: str) -> EncoderChoice:
        return EncoderChoice(name="libx264", options=encoder_options("libx264", x264_preset=x264_preset, crf=crf), reason=reason)

    if preference == "libx264":
        return x264("libx264 was configured (video.encoder: libx264)")
    requested = preference == "h264_nvenc"
    if "h264_nvenc" not in listed:
        if requested:
            return x264("h264_nvenc was requested but this ffmpeg does not list it; falling back to libx264")
        return x264("this ffmpeg does not list h264_nvenc; using libx264")
    if probe_ok:
        return EncoderChoice(name="h264_nvenc", options=encoder_options("h264_nvenc", crf=crf), reason="an h264_nvenc probe encode succeeded")
    cause = probe_error_line(probe_stderr) if probe_ok is False else "it was not probed"
    if requested:
        return x264(f"h264_nvenc was requested but its probe encode failed ({cause}); falling back to libx264")
    return x264(f"h264_nvenc is listed but its probe encode failed ({cause}); using libx264")


@lru_cache(maxsize=8)
def listed_encoders(binary: str) -> frozenset[str]:
    """The encoders ``binary`` was built with (``ffmpeg -encoders`` prints them on stdout)."""
    command = [binary, "-hide_banner", "-nostdin", "-encoders"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise EngineError(f"{binary} -encoders failed (exit {completed.returncode}): {probe_error_line(completed.stderr)}", field="ffmpeg")
    return frozenset(parse_encoders(completed.stdout))


@lru_cache(maxsize=8)
def probe_nvenc(binary: str) -> NvencProbe:
    """Encode a fifth of a second of a flat colour with h264_nvenc; the log says why when it fails."""
    command = [binary, "-hide_banner", "-nostdin", *_nvenc_probe_args()]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return NvencProbe(ok=False, stderr=f"the probe encode did not finish within {PROBE_TIMEOUT_S:.0f} s")
    return NvencProbe(ok=completed.returncode == 0, stderr=completed.stderr)


def choose_h264_encoder(
    preference: EncoderPreference, binary: str | None = None, *, x264_preset: str = DEFAULT_X264_PRESET, crf: int = DEFAULT_CRF
) -> EncoderChoice:
    """The H.264 encoder for ``preference`` with this ffmpeg (``binary``: the config's ``ffmpeg:``)."""
    if preference == "libx264":
        return decide(preference, set(), None, x264_preset=x264_preset, crf=crf)
    exe = ffmpeg_exe(binary)
    listed = set(listed_encoders(exe))
    probe = probe_nvenc(exe) if "h264_nvenc" in listed else None
    return decide(
        preference,
        listed,
        probe.ok if probe else None,
        probe.stderr if probe else "",
        x264_preset=x264_preset,
        crf=crf,
    )


def with_nvenc_fallback(encode: Callable[[str, dict[str, str]], T], encoder: str, options: dict[str, str]) -> tuple[T, str, str | None]:
    """Run ``encode(encoder, options)``; when h264_nvenc fails, run it again with libx264.

    Returns what ``encode`` returned, the encoder that made it, and why NVENC was abandoned (None when it
    was not), for the step's record. Failures of libx264 itself are raised as they are.
    """
    try:
        return encode(encoder, options), encoder, None
    except EngineError as failure:
        if encoder != "h264_nvenc":
            raise
        return encode("libx264", encoder_options("libx264")), "libx264", nvenc_fallback_reason(failure.message)


def nvenc_fallback_reason(log: str) -> str:
    """What a step records when an NVENC encode failed and libx264 made the video instead."""
    return f"h264_nvenc failed ({probe_error_line(log)}); encoded with libx264 instead"
