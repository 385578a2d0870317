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
