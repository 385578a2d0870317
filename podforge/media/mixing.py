"""Mix and master: the bed looped under the dialogue, ducked by a sidechain, then normalised in two passes.

Engines deliver stems at any level (Piper peaks at 0 dBFS, a MusicGen bed can be far louder), so both
stems are first brought to known loudness: the dialogue to ``SPEECH_LUFS`` and the bed to
``mix.bed_level_db`` below it. After two-pass ``loudnorm``, a final trim corrects what ``loudnorm`` could
not reach (very dynamic programmes make it fall back to dynamic mode) under a peak limiter.
"""

from __future__ import annotations

from pathlib import Path

import ffmpeg
from pydantic import BaseModel

from podforge.config import EpisodeTiming, MixLevels
from podforge.io import atomic_path
from podforge.media.ffmpeg import Loudness, loudnorm_filter, loudnorm_measure, measure_loudness, run_graph


class Master(BaseModel):
    wav: Path
    duration_s: float
    loudness: Loudness


SPEECH_LUFS = -18.0
TRIM_TOLERANCE_LU = 0.3
LIMITER_CEILING_DB = -2.0  # sample peaks; leaves room for inter-sample (true) peaks under -1 dBTP


def mix_and_master(dialogue_wav: Path, dialogue_s: float, bed_wav: Path, levels: MixLevels, timing: EpisodeTiming, workdir: Path, binary: str | None = None) -> Master:
    total_s = timing.episode_s(dialogue_s)
    speech_gain_db = _gain_to(SPEECH_LUFS, dialogue_wav, binary, peak_ceiling_db=-1.0)
    bed_gain_db = _gain_to(SPEECH_LUFS + levels.bed_level_db, bed_wav, binary, peak_ceiling_db=-6.0)
    premaster = workdir / "premaster.wav"
    with atomic_path(premaster) as tmp:
        graph = _mix_graph(dialogue_wav, bed_wav, total_s, levels, timing, tmp, speech_gain_db=speech_gain_db, bed_gain_db=bed_gain_db)
        run_graph(graph, what="mixing dialogue and music bed", binary=binary)

    measured = loudnorm_measure(premaster, target_lufs=levels.target_lufs, true_peak_db=levels.true_peak_db, binary=binary)
    master = workdir / "master.wav"
    loudnorm = loudnorm_filter(measured, target_lufs=levels.target_lufs, true_peak_db=levels.true_peak_db)
    _render(premaster, master, loudnorm, timing.sample_rate, binary, what="normalising loudness")
    premaster.unlink(missing_ok=True)

    loudness = measure_loudness(master, binary=binary)
    if abs(loudness.integrated_lufs - levels.target_lufs) > TRIM_TOLERANCE_LU or loudness.true_peak_dbtp > levels.true_peak_db + 0.5:
        trimmed = workdir / "master-trimmed.wav"
        trim = f"volume={levels.target_lufs - loudness.integrated_lufs:.2f}dB,alimiter=limit={10 ** (LIMITER_CEILING_DB / 20):.4f}:level=disabled:attack=2:release=60"
        _render(master, trimmed, trim, timing.sample_rate, binary, what="trimming the master to the loudness target")
        trimmed.replace(master)
        loudness = measure_loudness(master, binary=binary)
    return Master(wav=master, duration_s=total_s, loudness=loudness)


def _gain_to(target_lufs: float, stem: Path, binary: str | None, *, peak_ceiling_db: float) -> float:
    """The gain that brings ``stem`` to ``target_lufs`` without its true peak passing ``peak_ceiling_db``.

    The ceiling keeps odd material (rumble, a noise-making test model) from being boosted into the
    limiter: loudness is K-weighted, so low-frequency energy measures quiet however strong it is.
    Silence (ebur128 reports -70 or -inf) gets no gain.
    """
    measured = measure_loudness(stem, binary=binary)
    if measured.integrated_lufs <= -69.0:
        return 0.0
    return min(target_lufs - measured.integrated_lufs, peak_ceiling_db - measured.true_peak_dbtp)


def _render(source: Path, out: Path, audio_filter: str, sample_rate: int, binary: str | None, what: str) -> None:
    with atomic_path(out) as tmp:
        stream = ffmpeg.output(ffmpeg.input(str(source)), str(tmp), af=audio_filter, acodec="pcm_s16le", ar=sample_rate, ac=2)
        run_graph(stream, what=what, binary=binary)


def _mix_graph(dialogue_wav: Path, bed_wav: Path, total_s: float, levels: MixLevels, timing: EpisodeTiming, out: Path, *, speech_gain_db: float, bed_gain_db: float):
    intro_ms = int(round(timing.intro_s * 1000))
    fade_s = min(timing.outro_s, 4.0)
    stereo = {"sample_rates": timing.sample_rate, "channel_layouts": "stereo", "sample_fmts": "fltp"}
    speech = (
        ffmpeg.input(str(dialogue_wav))
        .filter("aformat", **stereo)
        .filter("highpass", f=70)  # rumble and DC: inaudible, but they eat headroom
        .filter("volume", f"{speech_gain_db:.2f}dB")
        .filter("adelay", delays=intro_ms, all=1)
        .filter("apad", whole_dur=f"{total_s:.3f}")
        .filter_multi_output("asplit", 2)
    )
    bed = (
        ffmpeg.input(str(bed_wav), stream_loop=-1)
        .filter("atrim", duration=f"{total_s:.3f}")
        .filter("asetpts", "PTS-STARTPTS")
        .filter("aformat", **stereo)
        .filter("highpass", f=30)
        .filter("volume", f"{bed_gain_db:.2f}dB")
        .filter("afade", t="in", d=1.5)
        .filter("afade", t="out", st=f"{total_s - fade_s:.3f}", d=f"{fade_s:.3f}")
    )
    ducked = ffmpeg.filter([bed, speech[0]], "sidechaincompress", threshold=levels.duck_threshold, ratio=levels.duck_ratio, attack=20, release=400)
    mixed = ffmpeg.filter([speech[1], ducked], "amix", inputs=2, normalize=0, duration="first")
    return ffmpeg.output(mixed, str(out), acodec="pcm_f32le", ar=timing.sample_rate)
