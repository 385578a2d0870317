"""Running ffmpeg: which binary, how graphs are run, how files are probed and measured.

Graphs are built with ``ffmpeg-python`` and run as an argument list (never ``shell=True``). The binary is
imageio-ffmpeg's static build unless the config names another. imageio-ffmpeg ships no ffprobe, so files
are probed with PyAV and measured with ffmpeg's own ``ebur128`` filter.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import av
import ffmpeg as ffmpeg_graph
from pydantic import BaseModel

from podforge.errors import EngineError


@lru_cache(maxsize=8)
def ffmpeg_exe(configured: str | None = None) -> str:
    """The ffmpeg binary: ``configured`` (the config's ``ffmpeg:``) or imageio-ffmpeg's static build."""
    if configured:
        if not Path(configured).is_file():
            raise EngineError(f"ffmpeg binary not found: {configured}", field="ffmpeg")
        return configured
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


CODEC_MESSAGE = re.compile(r"^\[(h264_nvenc|hevc_nvenc|libx264|aac|libmp3lame) @ [^\]]+\]")
"""A line an encoder logs itself (not one of ffmpeg's per-thread ``[vost#0:0/…]`` shutdown lines)."""


def run_ffmpeg(args: list[str], *, what: str, binary: str | None = None, timeout: float | None = None) -> str:
    """Run ffmpeg with ``args``; return its stderr (where it logs). Failures name ``what`` and the tail."""
    command = [ffmpeg_exe(binary), "-hide_banner", "-nostdin", *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        tail = log_tail(completed.stderr)
        raise EngineError(f"ffmpeg failed while {what} (exit {completed.returncode}):\n{tail}", field="ffmpeg")
    return completed.stderr


def log_tail(stderr: str, lines: int = 8) -> str:
    """The last ``lines`` of an ffmpeg log, led by its first codec error when that came earlier.

    ffmpeg says why an encoder failed once (``[h264_nvenc @ …] Cannot load libcuda.so.1``) and then logs a
    cascade of thread shutdowns; the reason must survive the cut.
    """
    logged = [line for line in stderr.strip().splitlines() if line.strip()]
    tail = logged[-lines:]
    cause = next((line for line in logged if CODEC_MESSAGE.match(line)), None)
    return "\n".join([cause, *tail] if cause and cause not in tail else tail)


def run_graph(stream, *, what: str, binary: str | None = None, timeout: float | None = None) -> str:
    """Run an ffmpeg-python graph (built with ``ffmpeg.output(...)``)."""
    args = ffmpeg_graph.compile(stream, cmd="ffmpeg", overwrite_output=True)[1:]
    return run_ffmpeg(args, what=what, binary=binary, timeout=timeout)


class StreamInfo(BaseModel):
    kind: str
    codec: str
    sample_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


class MediaInfo(BaseModel):
    duration_s: float
    streams: list[StreamInfo]


def probe(path: Path) -> MediaInfo:
    """Streams and duration of a media file, read with PyAV."""
    with av.open(str(path)) as container:
        streams = []
        for stream in container.streams:
            ctx = stream.codec_context
            streams.append(
                StreamInfo(
                    kind=stream.type,
                    codec=ctx.name,
                    sample_rate=getattr(ctx, "sample_rate", None) if stream.type == "audio" else None,
                    channels=getattr(ctx, "channels", None) if stream.type == "audio" else None,
                    width=ctx.width if stream.type == "video" else None,
                    height=ctx.height if stream.type == "video" else None,
                    fps=float(stream.average_rate) if stream.type == "video" and stream.average_rate else None,
                )
            )
        duration = container.duration / av.time_base if container.duration else 0.0
    return MediaInfo(duration_s=duration, streams=streams)


class Loudness(BaseModel):
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float


_SUMMARY = re.compile(r"Integrated loudness:\s+I:\s+(?P<i>-?[\d.]+|-inf) LUFS.*?LRA:\s+(?P<lra>-?[\d.]+) LU.*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-inf) dBFS", re.S)


def measure_loudness(path: Path, binary: str | None = None) -> Loudness:
    """Integrated loudness, loudness range and true peak, as ffmpeg's ``ebur128`` filter measures them
    (the audio only: a video stream in the file is not decoded)."""
    log = run_ffmpeg(["-i", str(path), "-vn", "-sn", "-dn", "-af", "ebur128=peak=true:framelog=quiet", "-f", "null", "-"], what=f"measuring loudness of {Path(path).name}", binary=binary)
    match = _SUMMARY.search(log[log.rfind("Summary:") :])
    if not match:
        raise EngineError(f"could not read ebur128's summary for {path}", field="ffmpeg")
    return Loudness(integrated_lufs=float(match["i"]), true_peak_dbtp=float(match["tp"]), lra=float(match["lra"]))


def loudnorm_measure(path: Path, *, target_lufs: float, true_peak_db: float, lra: float = 11.0, binary: str | None = None) -> dict[str, str]:
    """First pass of two-pass loudness normalisation: the ``loudnorm`` filter's measured values."""
    log = run_ffmpeg(
        ["-i", str(path), "-vn", "-sn", "-dn", "-af", f"loudnorm=I={target_lufs}:TP={true_peak_db}:LRA={lra}:print_format=json", "-f", "null", "-"],
        what=f"measuring {Path(path).name} for loudness normalisation",
        binary=binary,
    )
    return json.loads(log[log.rindex("{") : log.rindex("}") + 1])


def loudnorm_filter(measured: dict[str, str], *, target_lufs: float, true_peak_db: float, lra: float = 11.0) -> str:
    """Second pass: the ``loudnorm`` filter string that applies the first pass's measurements linearly."""
    return (
        f"loudnorm=I={target_lufs}:TP={true_peak_db}:LRA={lra}"
        f":measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
        f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
        f":offset={measured['target_offset']}:linear=true"
    )
