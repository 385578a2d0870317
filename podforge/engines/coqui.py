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
from typing import Annotated, Literal

import numpy as np
import soundfile
from pydantic import AfterValidator, Field, field_validator, model_validator

from podforge.config import models_dir
from podforge.engines.base import Engine, EngineSettings, ModelPath, Resources, SpeechRequest, SpeechResult
from podforge.errors import EngineError
from podforge.runner import run_in_env
from podforge.textnorm import normalize_text, split_sentences
from podforge.timing import Alignment, WordTiming

ENV = "coqui"
SENTENCE_PAUSE_S = 0.2
FRAME_S = 0.02
VOICED_WITHIN_DB = 35.0
XTTS_VRAM_GB = 4.0
"""XTTS-v2 inference peaks near 4 GB in fp16; the small single-speaker models need far less."""
SMALL_MODEL_VRAM_GB = 1.5


def _existing(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"{path} does not exist (relative paths are read under {models_dir()})")
    return path


ExistingModelPath = Annotated[ModelPath, AfterValidator(_existing)]


class CoquiSettings(EngineSettings):
    model: str | None = Field(default=None, description="a Coqui model name, e.g. tts_models/multilingual/multi-dataset/xtts_v2")
    model_path: ExistingModelPath | None = Field(default=None, description="a local checkpoint (for XTTS, the model folder)")
    config_path: ExistingModelPath | None = Field(default=None, description="its config.json (default: beside model_path)")
    speaker: str | None = Field(default=None, description="a built-in speaker of a multi-speaker model")
    speaker_wav: list[ExistingModelPath] | None = Field(default=None, description="reference recording(s) for XTTS cloning")
    language: str | None = Field(default=None, description="default: the script's")
    device: Literal["cuda", "cpu"] = "cuda"
    fp16: bool = Field(default=True, description="autocast on CUDA")
    normalize: bool = Field(default=True, description="read numbers, currencies and symbols out before synthesis")
    max_chunk_chars: int = Field(default=250, ge=20, description="XTTS's limit for English is 250")
    vram_gb: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=3600.0, gt=0)

    @field_validator("speaker_wav", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, (str, Path)) else value

    @model_validator(mode="after")
    def _a_model(self) -> CoquiSettings:
        if not self.model and not self.model_path:
            raise ValueError("a Coqui voice needs `model` (a Coqui model name) or `model_path` and `config_path`")
        return self

    @property
    def is_xtts(self) -> bool:
        return "xtts" in str(self.model or "").lower() or "xtts" in str(self.model_path or "").lower()


class CoquiEngine(Engine[SpeechRequest, SpeechResult]):
    name = "coqui"
    kind = "speech"
    version = "1"
    Request = SpeechRequest
    Result = SpeechResult
    Settings = CoquiSettings
    retakes = True  # the runner seeds torch with the take number: a QA retake samples anew
    settings: CoquiSettings

    @classmethod
    def resources_for(cls, settings: CoquiSettings) -> Resources:
        if settings.device == "cpu":
            return Resources(device="cpu", env=ENV, cpu_fallback=True)
        vram_gb = settings.vram_gb if settings.vram_gb is not None else (XTTS_VRAM_GB if settings.is_xtts else SMALL_MODEL_VRAM_GB)
        return Resources(device="cuda", vram_gb=vram_gb, env=ENV, cpu_fallback=True)

    def run(self, request: SpeechRequest, workdir: Path) -> SpeechResult:
        settings = self.settings
        language = settings.language or request.language
        sentences = split_sentences(request.text, settings.max_chunk_chars)
        if not sentences:
            raise EngineError(f"nothing to say in {request.text[:40]!r}", field="text")
        spoken = [normalize_text(sentence, language) if settings.normalize else sentence for sentence in sentences]
        runner_request = {"chunks": spoken, "language": language, "pause_s": SENTENCE_PAUSE_S, "seed": request.take}
        response = run_in_env(ENV, self.name, settings.model_dump(mode="json"), runner_request, workdir, timeout_s=settings.timeout_s)
        wav = Path(response.result["wav"])
        audio, sample_rate = soundfile.read(wav, dtype="float32", always_2d=False)
        words: list[WordTiming] = []
        for sentence, (start, end) in zip(sentences, response.result["spans"], strict=True):
            written = re.findall(r"\S+", sentence)
            weights = [len(normalize_text(word, language) if settings.normalize else word) + 1 for word in written]
            words += spread_words(written, weights, voiced_intervals(audio, sample_rate, start, end), sample_rate)
        return SpeechResult(wav=wav, sample_rate=sample_rate, duration_s=len(audio) / sample_rate, alignment=Alignment(words=words))


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
