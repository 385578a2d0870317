"""Mix and master: the bed looped under the dialogue, ducked by a sidechain, then normalised in two passes."""

from __future__ import annotations

from pathlib import Path

import ffmpeg
from pydantic import BaseModel

from podforge.config import MixSettings
from podforge.io import atomic_path
from podforge.media.ffmpeg import Loudness, loudnorm_filter, loudnorm_measure, measure_loudness, run_graph


class Master(BaseModel):
    wav: Path
    duration_s: float
    loudness: Loudness


def mix_and_master(dialogue_wav: Path, dialogue_s: float, bed_wav: Path, mix: MixSettings, workdir: Path, binary: str | None = None) -> Master:
    total_s = mix.intro_s + dialogue_s + mix.outro_s
    premaster = workdir / "premaster.wav"
    with atomic_path(premaster) as tmp:
        run_graph(_mix_graph(dialogue_wav, bed_wav, total_s, mix, tmp), what="mixing dialogue and music bed", binary=binary)

    measured = loudnorm_measure(premaster, target_lufs=mix.target_lufs, true_peak_db=mix.true_peak_db, binary=binary)
    master = workdir / "master.wav"
    with atomic_path(master) as tmp:
        loudnorm = loudnorm_filter(measured, target_lufs=mix.target_lufs, true_peak_db=mix.true_peak_db)
        stream = ffmpeg.output(ffmpeg.input(str(premaster)), str(tmp), af=loudnorm, acodec="pcm_s16le", ar=mix.sample_rate, ac=2)
        run_graph(stream, what="normalising loudness", binary=binary)
    premaster.unlink(missing_ok=True)
    return Master(wav=master, duration_s=total_s, loudness=measure_loudness(master, binary=binary))


def _mix_graph(dialogue_wav: Path, bed_wav: Path, total_s: float, mix: MixSettings, out: Path):
    intro_ms = int(round(mix.intro_s * 1000))
    fade_s = min(mix.outro_s, 4.0)
    stereo = {"sample_rates": mix.sample_rate, "channel_layouts": "stereo", "sample_fmts": "fltp"}
    speech = (
        ffmpeg.input(str(dialogue_wav))
        .filter("aformat", **stereo)
        .filter("adelay", delays=intro_ms, all=1)
        .filter("apad", whole_dur=f"{total_s:.3f}")
        .filter_multi_output("asplit", 2)
    )
    bed = (
        ffmpeg.input(str(bed_wav), stream_loop=-1)
        .filter("atrim", duration=f"{total_s:.3f}")
        .filter("asetpts", "PTS-STARTPTS")
        .filter("aformat", **stereo)
        .filter("volume", f"{mix.bed_level_db}dB")
        .filter("afade", t="in", d=1.5)
        .filter("afade", t="out", st=f"{total_s - fade_s:.3f}", d=f"{fade_s:.3f}")
    )
    ducked = ffmpeg.filter([bed, speech[0]], "sidechaincompress", threshold=mix.duck_threshold, ratio=mix.duck_ratio, attack=20, release=400)
    mixed = ffmpeg.filter([speech[1], ducked], "amix", inputs=2, normalize=0, duration="first")
    return ffmpeg.output(mixed, str(out), acodec="pcm_f32le", ar=mix.sample_rate)
