"""Coqui TTS: word timing from the voiced span, clear setup errors, and (heavy) a tiny random VITS voice
synthesised through ``TTS(model_path=..., config_path=...)`` in the real ``coqui`` environment.

The heavy tests build the ``coqui`` environment (coqui-tts with torch 2.9.1 and its CUDA libraries from
PyPI: about 7.6 GB, 4-6 minutes), so they run with ``make test-heavy``, not in CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from podforge import envs
from podforge.engines.base import SpeechRequest
from podforge.config import load_config
from podforge.engines.coqui import CoquiEngine, CoquiSettings, spread_words, voiced_intervals
from podforge.engines.registry import resolve_engine
from podforge.errors import ConfigError, EngineError
from tiny_models import make_tiny_vits

RATE = 16_000


def tone(seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def test_voiced_intervals_find_the_sound_between_pauses() -> None:
    audio = np.concatenate([silence(0.3), tone(0.5), silence(0.4), tone(0.2), silence(0.1)])
    intervals = voiced_intervals(audio, RATE, 0, len(audio))
    assert [(round(start / RATE, 2), round(end / RATE, 2)) for start, end in intervals] == [(0.3, 0.8), (1.2, 1.4)]


def test_voiced_intervals_of_silence_are_the_whole_span() -> None:
    assert voiced_intervals(silence(1.0), RATE, 100, 9000) == [(100, 9000)]


def test_words_are_spread_over_voiced_time_only() -> None:
    intervals = [(int(0.3 * RATE), int(0.8 * RATE)), (int(1.2 * RATE), int(1.7 * RATE))]
    words = spread_words(["alpha", "beta"], [1, 1], intervals, RATE)
    assert [(w.text, round(w.start_s, 3), round(w.end_s, 3)) for w in words] == [("alpha", 0.3, 0.8), ("beta", 1.2, 1.7)]


def test_longer_spoken_words_get_more_time() -> None:
    # "$1.50" is said "one dollar fifty": its weight is its spoken length, so it takes most of the time
    words = spread_words(["costs", "$1.50"], [6, 17], [(0, RATE)], RATE)
    assert words[0].start_s == 0.0 and words[-1].end_s == 1.0
    assert words[1].end_s - words[1].start_s > 2 * (words[0].end_s - words[0].start_s)
    assert words[0].end_s == words[1].start_s


def voice_preset(name: str, settings: dict):
    """The engine as a voice preset resolves it: errors name the preset's settings."""
    return resolve_engine(load_config(), "coqui", "speech", settings=settings, settings_field=f"voices.{name}.settings")


def test_a_voice_without_a_model_names_the_voice() -> None:
    with pytest.raises(ConfigError, match="needs `model`") as raised:
        voice_preset("host-a", {"language": "en"})
    assert raised.value.field == "voices.host-a.settings"


def test_a_missing_checkpoint_names_the_voice_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.pth does not exist") as raised:
        voice_preset("narrator", {"model_path": str(tmp_path / "missing.pth"), "config_path": str(tmp_path / "config.json")})
    assert raised.value.field == "voices.narrator.settings.model_path"


def test_a_missing_reference_recording_is_reported_before_the_runner_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODFORGE_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"models/voices/me.wav does not exist") as raised:
        voice_preset("xtts-clone", {"model": "tts_models/multilingual/multi-dataset/xtts_v2", "speaker_wav": "voices/me.wav"})
    assert raised.value.field == "voices.xtts-clone.settings.speaker_wav.0"


def test_an_unbuilt_environment_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODFORGE_HOME", str(tmp_path / "fresh-home"))
    engine = CoquiEngine({"model": "tts_models/multilingual/multi-dataset/xtts_v2", "speaker": "Ana Florence"})
    with pytest.raises(EngineError, match="run `podforge envs build coqui`"):
        engine.run(SpeechRequest(text="Hello."), tmp_path)


def test_text_without_words_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="nothing to say"):
        CoquiEngine({"model": "tts_models/en/vctk/vits"}).run(SpeechRequest(text=" … "), tmp_path)


def test_resources_depend_on_the_model_and_device(tmp_path: Path) -> None:
    xtts = CoquiEngine.resources_for(CoquiSettings(model="tts_models/multilingual/multi-dataset/xtts_v2"))
    assert (xtts.device, xtts.vram_gb, xtts.env, xtts.cpu_fallback) == ("cuda", 4.0, "coqui", True)
    (tmp_path / "model.pth").write_bytes(b"")
    assert CoquiEngine.resources_for(CoquiSettings(model_path=tmp_path / "model.pth")).vram_gb == 1.5
    assert CoquiEngine.resources_for(CoquiSettings(model="tts_models/en/vctk/vits", device="cpu")).device == "cpu"


# --- the real environment -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    envs.build("coqui", log=lambda line: None)
    return make_tiny_vits(tmp_path_factory.mktemp("tiny-vits"))


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_a_saved_vits_voice_speaks_longer_for_longer_text(tiny_vits: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, config_path = tiny_vits
    engine = CoquiEngine({"model_path": str(model_path), "config_path": str(config_path), "device": "cpu"})
    short = engine.run(SpeechRequest(text="Hello there."), tmp_path / "short")
    text = "Hello there. It costs $1.50 at 3:30 pm, Dr. Lee said. Then we went home and talked for a long while."
    long = engine.run(SpeechRequest(text=text), tmp_path / "long")

    for result in (short, long):
        info = soundfile.info(result.wav)
        assert (info.samplerate, info.channels) == (RATE, 1)
        assert result.sample_rate == RATE
        assert abs(info.frames / RATE - result.duration_s) < 1e-6
    assert long.duration_s > 2 * short.duration_s

    written = text.split()
    assert [word.text for word in long.alignment.words] == written
    starts = [word.start_s for word in long.alignment.words]
    assert starts == sorted(starts)
    assert all(0 <= word.start_s < word.end_s <= long.duration_s for word in long.alignment.words)


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_missing_xtts_weights_say_where_to_put_them(tiny_vits: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "tts"))
    engine = CoquiEngine({"model": "tts_models/multilingual/multi-dataset/xtts_v2", "speaker": "Ana Florence", "device": "cpu"})
    with pytest.raises(EngineError) as raised:
        engine.run(SpeechRequest(text="Hello."), tmp_path / "out")
    message = str(raised.value)
    assert "not available offline" in message
    assert "hf download tts-hub/XTTS-v2" in message
    assert str(tmp_path / "hf") in message
