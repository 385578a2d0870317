"""Final containers: the MP4 (H.264 video + AAC audio, faststart) and the MP3."""

from __future__ import annotations

from pathlib import Path

import ffmpeg

from podforge.io import atomic_path
from podforge.media.ffmpeg import run_graph


def mux_mp4(video: Path, audio: Path, out: Path, *, aac_bitrate: str, sample_rate: int = 48000, binary: str | None = None) -> Path:
    """Copy the H.264 stream, encode the master to AAC, and move the index to the front (+faststart)."""
    with atomic_path(out) as tmp:
        picture = ffmpeg.input(str(video)).video
        sound = ffmpeg.input(str(audio)).audio
        stream = ffmpeg.output(picture, sound, str(tmp), vcodec="copy", acodec="aac", audio_bitrate=aac_bitrate, ar=sample_rate, movflags="+faststart", f="mp4")
        run_graph(stream, what="muxing the episode MP4", binary=binary)
    return out


def encode_mp3(audio: Path, out: Path, *, bitrate: str, binary: str | None = None) -> Path:
    with atomic_path(out) as tmp:
        stream = ffmpeg.output(ffmpeg.input(str(audio)).audio, str(tmp), acodec="libmp3lame", audio_bitrate=bitrate, ar=44100, f="mp3", write_xing=1)
        run_graph(stream, what="encoding the episode MP3", binary=binary)
    return out
