"""The hibari engine: the bundled `heart` voice, phoneme timing from the model's own durations, seeded
retakes, and nothing ever downloaded (the speech QA recogniser is checked offline beside it)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import soundfile

from podforge.engines.base import AsrRequest, SpeechRequest
from podforge.engines.hibari import HibariEngine
from podforge.engines.portrait import _VISEMES
from podforge.errors import EngineError

LINE = "And I'm Sam. No studio, no microphone, and no graphics card."


@pytest.fixture(scope="module")
def heart() -> HibariEngine:
    return HibariEngine({"voice": "heart"})


@pytest.fixture(scope="module")
def clip(heart, tmp_path_factory):
    return heart.run(SpeechRequest(text=LINE), tmp_path_factory.mktemp("heart"))


def test_heart_speaks_at_24_khz_with_phonemes_timed_to_the_last_sample(clip):
    audio, rate = soundfile.read(clip.wav)
    assert rate == clip.sample_rate == 24000 and len(audio) / rate == pytest.approx(clip.duration_s)
    phonemes = clip.alignment.phonemes
    assert phonemes[0].start_s == 0 and phonemes[-1].end_s == pytest.approx(clip.duration_s)  # durations add up to the audio
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(phonemes, phonemes[1:]))
    # misaki's one-letter diphthongs are written out in IPA, so the portrait finds a viseme for each sound
    symbols = [p.phoneme for p in phonemes if p.phoneme not in " _.,ˈˌː"]
    assert not set("AIWYOQT") & set(symbols)
    assert sum(symbol in _VISEMES for symbol in symbols) / len(symbols) > 0.95


def test_heart_words_follow_the_written_text_in_order(clip):
    words = clip.alignment.words
    assert [w.text for w in words] == LINE.split()
    assert all(w.start_s < w.end_s <= v.start_s + 1e-9 for w, v in zip(words, words[1:]))
    assert words[0].start_s > 0.1  # the model's lead-in silence is not a word


def test_the_noise_is_seeded_and_a_retake_sounds_different_and_slower(heart, clip, tmp_path):
    again = heart.run(SpeechRequest(text=LINE), tmp_path / "again")
    retake = heart.run(SpeechRequest(text=LINE, take=1), tmp_path / "retake")
    assert again.wav.read_bytes() == clip.wav.read_bytes()
    assert retake.wav.read_bytes() != clip.wav.read_bytes() and retake.duration_s > clip.duration_s


def test_a_voice_that_would_be_downloaded_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HIBARI_HOME", str(tmp_path))
    with pytest.raises(EngineError, match="downloads it on first use") as error:
        HibariEngine({"voice": "emma"})
    assert error.value.field == "voices.settings.voice" and list(tmp_path.iterdir()) == []


def test_speech_and_the_recogniser_work_with_the_network_unreachable(tmp_path, monkeypatch):
    from podforge.engines.whisper import WhisperEngine

    attempts: list = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network unreachable in this test ({address})")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HIBARI_HOME", str(tmp_path / "hibari-home"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    clip = HibariEngine({"voice": "heart"}).run(SpeechRequest(text="Nothing here comes from the network."), tmp_path)
    heard = WhisperEngine({"model": "bundled"}).run(AsrRequest(audio=clip.wav), tmp_path)  # a fresh model load
    assert "network" in heard.text.lower() and attempts == []
    assert not (tmp_path / "hibari-home").exists()
