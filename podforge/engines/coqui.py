"""Coqui TTS speech (``coqui-tts``), run in the isolated ``coqui`` environment.

Settings (a voice preset's ``settings:``): ``model`` (a Coqui model name, e.g.
``tts_models/multilingual/multi-dataset/xtts_v2``) or ``model_path`` + ``config_path`` (a local
checkpoint and its config.json; for XTTS, the model folder); ``speaker_wav`` (a reference recording, or a
list, for XTTS cloning); ``speaker`` (a built-in speaker of a multi-speaker model); ``language`` (default:
the script's); ``device`` (``cuda`` or ``cpu``); ``fp16`` (default true, CUDA only); ``normalize``
(default true); ``max_chunk_chars`` (default 250, XTTS's limit for English); ``vram_gb``. Relative paths
are read under ``$PODFORGE_HOME/models``.

The text is cut into sentences, each normalised for speech (:mod:`podforge.textnorm`) and synthesised on
its own by the runner (``external/coqui/runner.py``), which returns where each sentence lies in the WAV.

Coqui reports no phoneme or word timing. Word timings are estimated: inside each sentence's span the
voiced frames are found by their energy (20 ms frames within 35 dB of the sentence's loudest frame), and
the sentence's written words are laid end to end over that voiced time (pauses skipped), each taking a
share proportional to the length of its spoken form ("$1.50" counts as "one dollar fifty"). The alignment
has no phonemes, so an avatar engine must find its own mouth shapes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from podforge.config import models_dir
from podforge.engines.base import Alignment, Engine, Resources, SpeechRequest, SpeechResult, WordTiming
from podforge.errors import EngineError
from podforge.runner import run_in_env
from podforge.textnorm import normalize_text, split_sentences

ENV = "coqui"
SENTENCE_PAUSE_S = 0.2
FRAME_S = 0.02
VOICED_WITHIN_DB = 35.0
XTTS_VRAM_GB = 4.0
"""XTTS-v2 inference peaks near 4 GB in fp16; the small single-speaker models need far less."""
SMALL_MODEL_VRAM_GB = 1.5
PATH_SETTINGS = ("model_path", "config_path")


def resolve_setting_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else models_dir() / path


class CoquiEngine(Engine[SpeechRequest, SpeechResult]):
    name = "coqui"
    kind = "speech"
    version = "1"
    Request = SpeechRequest
    Result = SpeechResult

    @classmethod
    def resources_for(cls, settings: dict[str, Any]) -> Resources:
        if settings.get("device") == "cpu":
            return Resources(device="cpu", env=ENV, cpu_fallback=True)
        is_xtts = "xtts" in str(settings.get("model", "")) or "xtts" in str(settings.get("model_path", "")).lower()
        vram_gb = float(settings.get("vram_gb", XTTS_VRAM_GB if is_xtts else SMALL_MODEL_VRAM_GB))
        return Resources(device="cuda", vram_gb=vram_gb, env=ENV, cpu_fallback=True)

    def run(self, request: SpeechRequest, workdir: Path) -> SpeechResult:
        language = self.settings.get("language") or request.language
        sentences = split_sentences(request.text, int(self.settings.get("max_chunk_chars", 250)))
        if not sentences:
            raise EngineError(f"nothing to say in {request.text[:40]!r}", field="text")
        normalize = bool(self.settings.get("normalize", True))
        spoken = [normalize_text(sentence, language) if normalize else sentence for sentence in sentences]
        runner_request = {"chunks": spoken, "language": language, "pause_s": SENTENCE_PAUSE_S}
        response = run_in_env(ENV, self.name, self.runner_settings(request.voice), runner_request, workdir, timeout_s=float(self.settings.get("timeout_s", 3600)))
        wav = Path(response.result["wav"])
        audio, sample_rate = soundfile.read(wav, dtype="float32", always_2d=False)
        words: list[WordTiming] = []
        for sentence, (start, end) in zip(sentences, response.result["spans"], strict=True):
            written = re.findall(r"\S+", sentence)
            weights = [len(normalize_text(word, language) if normalize else word) + 1 for word in written]
            words += spread_words(written, weights, voiced_intervals(audio, sample_rate, start, end), sample_rate)
        return SpeechResult(wav=wav, sample_rate=sample_rate, duration_s=len(audio) / sample_rate, alignment=Alignment(words=words))

    def runner_settings(self, voice: str) -> dict[str, Any]:
        """The settings the runner gets: local paths made absolute and checked, so errors name the voice."""
        settings = dict(self.settings)
        if not settings.get("model") and not settings.get("model_path"):
            raise EngineError("a Coqui voice needs `model` (a Coqui model name) or `model_path` and `config_path`", field=f"voices.{voice}.settings")
        for key in PATH_SETTINGS:
            if settings.get(key):
                settings[key] = str(self._existing(settings[key], voice, key))
        if settings.get("speaker_wav"):
            references = settings["speaker_wav"] if isinstance(settings["speaker_wav"], list) else [settings["speaker_wav"]]
            settings["speaker_wav"] = [str(self._existing(reference, voice, "speaker_wav")) for reference in references]
        return settings

    @staticmethod
    def _existing(value: str, voice: str, key: str) -> Path:
        path = resolve_setting_path(value)
        if not path.exists():
            raise EngineError(f"{path} does not exist (relative paths are read under {models_dir()})", field=f"voices.{voice}.settings.{key}")
        return path


def voiced_intervals(audio: np.ndarray, sample_rate: int, start: int, end: int) -> list[tuple[int, int]]:
    """The voiced stretches (sample ranges) of ``audio[start:end]``, by frame energy; the whole span if none."""
    frame = max(1, int(sample_rate * FRAME_S))
    count = (end - start) // frame
    if count == 0:
        return [(start, end)]
    frames = audio[start : start + count * frame].reshape(count, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    voiced = rms >= max(rms.max() * 10 ** (-VOICED_WITHIN_DB / 20), 1e-5)
    intervals: list[tuple[int, int]] = []
    for index in np.flatnonzero(voiced):
        frame_start = start + int(index) * frame
        if intervals and intervals[-1][1] == frame_start:
            intervals[-1] = (intervals[-1][0], frame_start + frame)
        else:
            intervals.append((frame_start, frame_start + frame))
    return intervals or [(start, end)]


def spread_words(words: list[str], weights: list[int], intervals: list[tuple[int, int]], sample_rate: int) -> list[WordTiming]:
    """Lay ``words`` end to end over the voiced ``intervals``, each taking its weight's share of voiced time."""
    if not words:
        return []
    lengths = np.array([end - start for start, end in intervals], dtype=float)
    voiced_before = np.concatenate([[0.0], np.cumsum(lengths)])
    bounds = voiced_before[-1] * np.cumsum([0, *weights]) / sum(weights)

    def sample_at(voiced_position: float, side: str) -> float:
        """Voiced time -> sample; at a pause a start goes to the next stretch, an end stays in the last."""
        index = int(np.clip(np.searchsorted(voiced_before, voiced_position, side=side) - 1, 0, len(intervals) - 1))
        return intervals[index][0] + voiced_position - voiced_before[index]

    return [
        WordTiming(text=word, start_s=sample_at(bounds[i], "right") / sample_rate, end_s=sample_at(bounds[i + 1], "left") / sample_rate)
        for i, word in enumerate(words)
    ]
