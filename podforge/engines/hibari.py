"""hibari TTS, in-process on the CPU: a 7.9 MB distillation of Kokoro-82M (``hibari-tts``, Apache-2.0).

Only the voice the wheel bundles, ``heart`` (American English, female, 24 kHz; Kokoro's ``af_heart``),
is allowed: hibari downloads its other voices on first use, and Podforge never downloads at run time.

hibari reads text through its own G2P (misaki's rules and lexicons) and its ONNX model predicts a
spectrum per 12.5 ms frame, turned into a waveform on the host (``hibari.dsp``). It reports no timing,
but its model computes a duration per phoneme (in 25 ms units, two frames each) before upsampling: the
engine adds that tensor to the graph's outputs when it loads the model, so each phoneme's time is known
exactly. Misaki's one-letter diphthongs and affricates are written out in IPA (``A`` -> ``e`` ``ɪ``,
``ʤ`` -> ``d`` ``ʒ``), so the portrait animator finds its visemes. Misaki separates spoken words with
spaces; the written words take the times of their spoken forms
(:func:`podforge.textnorm.time_written_words`: "$4/hr" is on screen from "four" to "hour").

Settings: ``voice`` (``heart``), ``speed`` (1.0 is the teacher's pace), ``seed`` (the noise component;
fixed so the same line sounds the same), ``threads`` (onnxruntime threads, default 1). A QA retake
(``SpeechRequest.take`` = n) draws new noise (``seed + n``) and speaks 5 % slower per take.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from pydantic import Field

from podforge.engines.base import Engine, EngineSettings, SpeechRequest, SpeechResult
from podforge.engines.onnx import import_onnxruntime
from podforge.errors import EngineError
from podforge.media.audio import write_wav
from podforge.textnorm import normalize_text, time_written_words
from podforge.timing import Alignment, PhonemeTiming, WordTiming

DURATIONS = "/Cast_32_output_0"
"""The model's integer phoneme durations (pads included), after rounding and clipping, before upsampling."""
FRAMES_PER_DURATION = 2
RETAKE_SLOWER = 0.95
MISAKI_TO_IPA = {"A": "eɪ", "I": "aɪ", "W": "aʊ", "Y": "ɔɪ", "O": "oʊ", "Q": "əʊ", "T": "ɾ", "ʤ": "dʒ", "ʧ": "tʃ", "ᵊ": "ə"}
PAD = "_"
WORD_BREAKS = {" ", PAD, ".", ",", "?", "!", ";", ":", "—", "…", '"', "“", "”", "(", ")"}


class HibariSettings(EngineSettings):
    voice: str = Field(default="heart", description="a voice bundled in the wheel (heart); others would be downloaded, so they are refused")
    speed: float = Field(default=1.0, gt=0.3, le=3.0, description="1.0 is the teacher's pace")
    seed: int = Field(default=0, description="the noise component; fixed so the same line sounds the same")
    threads: int = Field(default=1, ge=1, le=16, description="onnxruntime threads")


class HibariEngine(Engine[SpeechRequest, SpeechResult]):
    name = "hibari"
    kind = "speech"
    version = "1"
    Request = SpeechRequest
    Result = SpeechResult
    Settings = HibariSettings
    settings: HibariSettings
    retakes = True

    def __init__(self, settings: HibariSettings | dict[str, Any] | None = None):
        super().__init__(settings)
        import_onnxruntime()  # before hibari imports it: its device id goes under PODFORGE_HOME, not ~/.cache
        from hibari import Hibari

        voice = self.settings.voice
        self.tts = Hibari(voice=voice, model=timed_model(bundled_voice_file(voice)), threads=self.settings.threads)
        self.sample_rate = int(self.tts.sample_rate)
        self._synthesis_lock = threading.Lock()

    def run(self, request: SpeechRequest, workdir: Path) -> SpeechResult:
        from hibari import dsp

        speed = self.settings.speed * RETAKE_SLOWER**request.take
        rng = np.random.default_rng(self.settings.seed + request.take)
        spoken = normalize_text(request.text, request.language)
        pieces: list[np.ndarray] = []
        phonemes: list[PhonemeTiming] = []
        cursor = 0
        with self._synthesis_lock:
            for chunk in self.tts.phonemize(spoken):
                ids = self.tts.ids(chunk)
                outputs = self.tts.sess.run(None, {"ids": np.asarray([ids], np.int64), "speed": np.asarray([speed], np.float32)})
                lh, theta, ln, lr, phi, f0 = (output[0] for output in outputs[:6])
                durations = outputs[6].reshape(-1)
                audio = dsp.synth(lh, theta, ln, lr, phi, f0, rng)
                symbols = [PAD, *(symbol for symbol in chunk if symbol in self.tts.vocab), PAD]
                phonemes += phoneme_timings(symbols, durations, cursor, self.sample_rate)
                pieces.append(audio)
                cursor += len(audio)
        if not pieces:
            raise EngineError(f"hibari produced no audio for {request.text[:40]!r}", field="text")
        audio = np.concatenate(pieces)
        wav = write_wav(workdir / "speech.wav", audio, self.sample_rate)
        spoken_words = [WordTiming(text=word, start_s=start, end_s=end) for word, start, end in time_written_words(request.text, word_spans(phonemes), request.language)]
        alignment = Alignment(words=spoken_words, phonemes=phonemes)
        return SpeechResult(wav=wav, sample_rate=self.sample_rate, duration_s=len(audio) / self.sample_rate, alignment=alignment)


def word_spans(phonemes: list[PhonemeTiming]) -> list[tuple[float, float]]:
    """(start, end) of each spoken word: misaki separates words with spaces, sentences with punctuation."""
    spans: list[tuple[float, float]] = []
    word: list[PhonemeTiming] = []
    for timing in [*phonemes, PhonemeTiming(phoneme=" ", start_s=0, end_s=0)]:
        if timing.phoneme in WORD_BREAKS:
            if word:
                spans.append((word[0].start_s, word[-1].end_s))
                word = []
        elif timing.phoneme not in "ˈˌː":
            word.append(timing)
    return spans


def bundled_voice_file(voice: str) -> str:
    """The ONNX file of a voice inside the wheel; any other voice would be downloaded, so it is refused."""
    from hibari.voices import VOICES, voice_path

    bundled = sorted(name for name, entry in VOICES.items() if entry.get("bundled"))
    if not VOICES.get(voice, {}).get("bundled"):
        raise EngineError(f"hibari voice {voice!r} is not in the package (hibari downloads it on first use, which Podforge never does); bundled: {', '.join(bundled)}", field="voices.settings.voice")
    return voice_path(voice, download_missing=False)


def timed_model(path: str) -> bytes:
    """The voice's ONNX model with the phoneme durations added to its outputs (serialised for onnxruntime)."""
    import onnx

    model = onnx.load(path)
    if DURATIONS not in {output for node in model.graph.node for output in node.output}:
        raise EngineError(f"{path} has no {DURATIONS} tensor: not the hibari 0.2 model this engine reads durations from", field="voices.settings.voice")
    model.graph.output.append(onnx.helper.make_tensor_value_info(DURATIONS, onnx.TensorProto.INT64, None))
    return model.SerializeToString()


def phoneme_timings(symbols: list[str], durations: np.ndarray, offset: int, sample_rate: int) -> list[PhonemeTiming]:
    """One timing per model symbol (pads as ``_``), IPA for misaki's compound letters, from ``offset`` samples."""
    from hibari import dsp

    unit = FRAMES_PER_DURATION * dsp.HOP
    if len(symbols) != len(durations):
        raise EngineError(f"hibari returned {len(durations)} durations for {len(symbols)} phonemes", field="text")
    timings: list[PhonemeTiming] = []
    cursor = offset
    for symbol, duration in zip(symbols, durations):
        span = int(duration) * unit
        parts = MISAKI_TO_IPA.get(symbol, symbol)
        for position, part in enumerate(parts):
            start = cursor + span * position // len(parts)
            end = cursor + span * (position + 1) // len(parts)
            timings.append(PhonemeTiming(phoneme=part, start_s=start / sample_rate, end_s=end / sample_rate))
        cursor += span
    return timings
