"""Piper's word timing: written words timed from the phonemes of their spoken forms."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from podforge.engines.base import SpeechRequest
from podforge.engines.piper import SENTENCE_PAUSE_S, PiperEngine, align_words
from podforge.timing import PhonemeTiming


def test_align_words_finds_run_together_words_and_fills_unmatched_ones() -> None:
    """Constructed timeline: "of the" said as one phoneme word, and a word whose sounds changed."""
    symbols = ["ʌ", "v", "ð", "ə", " ", "k", "æ", "t", " ", "s", "ɪ", "t", "s"]
    timeline = [PhonemeTiming(phoneme=symbol, start_s=index * 0.1, end_s=(index + 1) * 0.1) for index, symbol in enumerate(symbols)]
    spans = align_words([["ʌ", "v"], ["ð", "ə"], ["k", "ɑ", "ɹ"], ["s", "ɪ", "t", "s"]], timeline)
    assert spans[0] == pytest.approx((0.0, 0.2)) and spans[1] == pytest.approx((0.2, 0.4))
    assert spans[2][0] >= 0.4 and spans[2][1] <= 0.9 + 1e-9, "'car' matched only its 'k': between its neighbours"
    assert spans[3] == pytest.approx((0.9, 1.3))


def silences(audio: np.ndarray, rate: int, at_least_s: float) -> list[tuple[float, float]]:
    """Runs of exact digital silence: the pauses Piper's engine puts between sentences."""
    silent = np.concatenate([[False], audio == 0, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    return [(start / rate, end / rate) for start, end in zip(edges[::2], edges[1::2]) if end - start >= at_least_s * rate]


def test_sentences_with_rewritten_words_start_and_end_where_they_are_heard(tmp_path) -> None:
    """The pauses between sentences are known in the audio: each sentence's first written word must
    start just after one and its last word end just before the next, although espeak joins words
    ("of the") and the written words say more ("$4/hr", "A100", "torch.cuda.is_available()")."""
    text = "Of the GPU fleet, 10% idles at night. It costs $4/hr to run an A100 there. Then torch.cuda.is_available() says yes."
    result = PiperEngine().run(SpeechRequest(text=text, language="en"), tmp_path)
    audio, rate = soundfile.read(result.wav)
    pauses = silences(audio, rate, SENTENCE_PAUSE_S * 0.9)
    assert len(pauses) == 2
    words = result.alignment.words
    assert [word.text for word in words] == text.split()
    assert all(a.end_s <= b.start_s + 1e-6 and a.start_s <= a.end_s for a, b in zip(words, words[1:]))
    firsts = [words[text.split().index(word)] for word in ("It", "Then")]
    lasts = [words[text.split().index(word)] for word in ("night.", "there.")]
    for (pause_start, pause_end), first, last in zip(pauses, firsts, lasts):
        assert pause_end - 1e-3 <= first.start_s <= pause_end + 0.15
        assert pause_start - 0.2 <= last.end_s <= pause_start + 1e-3
    rate_word = words[text.split().index("$4/hr")]
    assert rate_word.end_s - rate_word.start_s > 0.5, "'four dollars an hour' takes a while to say"


# --- presets of one voice: one session, and the pitch shift --------------------------------------------

STEADY = {"noise_scale": 0.0, "noise_w_scale": 0.0}


def median_f0(audio: np.ndarray, rate: int) -> float:
    """Median fundamental (Hz) of the voiced 40 ms frames, from each frame's autocorrelation peak (60-400 Hz)."""
    size = int(0.04 * rate)
    frames = audio[: audio.size // size * size].reshape(-1, size)
    energy = (frames**2).mean(axis=1)
    pitches = []
    for frame in frames[energy > 0.1 * energy.max()]:
        frame = frame - frame.mean()
        correlation = np.correlate(frame, frame, mode="full")[size - 1 :]
        low, high = int(rate / 400), int(rate / 60)
        lag = low + int(np.argmax(correlation[low:high]))
        if correlation[lag] > 0.3 * correlation[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


def test_presets_of_one_voice_share_one_session_and_take_turns() -> None:
    plain, bright = PiperEngine(STEADY), PiperEngine({**STEADY, "pitch_semitones": 4.0, "length_scale": 1.07})
    assert plain.voice is bright.voice, "one ONNX session per voice file"
    with plain.turn():
        assert not bright._shared.lock.acquire(blocking=False), "a second preset waits for the first one's turn"
    assert bright._shared.lock.acquire(blocking=False)
    bright._shared.lock.release()


def test_pitch_shift_moves_pitch_by_the_semitones_and_keeps_the_timing_exact(tmp_path) -> None:
    text = "The ovens run for maybe four hours a night. The rest is waiting and measuring."
    plain = PiperEngine(STEADY).run(SpeechRequest(text=text), tmp_path / "plain")
    bright = PiperEngine({**STEADY, "pitch_semitones": 4.0, "length_scale": 1.07}).run(SpeechRequest(text=text), tmp_path / "bright")
    audio, rate = soundfile.read(bright.wav)
    assert rate == bright.sample_rate != plain.sample_rate and abs(bright.duration_s - audio.size / rate) < 1e-6
    reference, reference_rate = soundfile.read(plain.wav)
    semitones = 12 * np.log2(median_f0(audio, rate) / median_f0(reference, reference_rate))
    assert abs(semitones - 4.0) <= 0.7, f"shifted by {semitones:.2f} semitones"
    assert 0.8 <= bright.duration_s / plain.duration_s <= 1.05, "the preset keeps about the unshifted pace"
    (pause_start, pause_end), = silences(audio, rate, SENTENCE_PAUSE_S * 0.9)
    words = bright.alignment.words
    second = next(word for word in words if word.text == "rest")
    assert pause_end - 1e-3 <= words[words.index(second) - 1].start_s <= pause_end + 0.15, "word timing is on the shifted audio's clock"
    assert abs(bright.alignment.phonemes[-1].end_s - bright.duration_s) < 0.05
