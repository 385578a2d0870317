"""MusicGen through its real environments: a tiny random model saved with ``save_pretrained`` and loaded
with ``from_pretrained`` by the runner, so durations, continuation and the loop seam are exercised on the
real transformers code. Building the ``musicgen`` environment takes 2-3 minutes (torch 2.13 CPU, ~1.1 GB).

The audiocraft backend (heavy: its environment is torch 2.1.0 from PyPI, the CUDA build, about 6 GB and
4 minutes to build) is tested the same way on a tiny model built with audiocraft's own builders and loaded
with ``MusicGen.get_pretrained``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile

from podforge import envs
from podforge.engines.base import MusicRequest, MusicResult
from podforge.engines.musicgen import MusicGenEngine, MusicGenSettings, make_loop
from podforge.errors import ConfigError, EngineError
from tiny_models import make_tiny_audiocraft_musicgen, make_tiny_musicgen

MODEL_RATE = 32_000
# the tiny model's window is one second, so beds of a few seconds need several continued windows
TINY_SETTINGS = {"window_s": 1.0, "overlap_s": 0.3, "crossfade_s": 0.2, "top_k": 50}


@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    envs.build("musicgen", log=lambda line: None)
    return make_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))


def bed_samples(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(path, dtype="float32")
    return audio, rate


@pytest.fixture(scope="module")
def short_bed(tiny_musicgen: Path, tmp_path_factory: pytest.TempPathFactory) -> MusicResult:
    engine = MusicGenEngine({"model": str(tiny_musicgen), **TINY_SETTINGS})
    return engine.run(MusicRequest(prompt="warm calm lo-fi piano", duration_s=0.5, seed=3), tmp_path_factory.mktemp("short-bed"))


@pytest.mark.timeout(1200)
def test_a_bed_within_one_window_has_the_exact_duration(short_bed: MusicResult) -> None:
    audio, rate = bed_samples(short_bed.wav)
    assert rate == MODEL_RATE
    assert len(audio) == 0.5 * MODEL_RATE
    assert short_bed.duration_s == 0.5
    assert short_bed.loopable
    assert "1 window" in short_bed.description
    assert np.abs(audio).max() > 0.0


@pytest.mark.timeout(1200)
def test_a_bed_longer_than_the_window_is_continued_to_the_exact_duration(tiny_musicgen: Path, tmp_path: Path) -> None:
    engine = MusicGenEngine({"model": str(tiny_musicgen), **TINY_SETTINGS})
    duration_s = 2.37  # not a whole number of codec frames: trimming must still be exact
    result = engine.run(MusicRequest(prompt="upbeat electronic intro", duration_s=duration_s, seed=5), tmp_path)
    audio, rate = bed_samples(result.wav)
    assert len(audio) == round(duration_s * MODEL_RATE)
    # 2.37 s + 0.2 s seam = 2.57 s: a 1 s window, then windows of 0.7 s new audio after a 0.3 s prompt
    windows = 1 + math.ceil((2.57 - 1.0) / 0.7)
    assert f"{windows} window(s)" in result.description


@pytest.mark.timeout(1200)
def test_the_same_seed_gives_the_same_bed_and_another_seed_another(tiny_musicgen: Path, short_bed: MusicResult, tmp_path: Path) -> None:
    engine = MusicGenEngine({"model": str(tiny_musicgen), **TINY_SETTINGS})
    again = engine.run(MusicRequest(prompt="warm calm lo-fi piano", duration_s=0.5, seed=3), tmp_path / "again").wav
    other = engine.run(MusicRequest(prompt="warm calm lo-fi piano", duration_s=0.5, seed=4), tmp_path / "other").wav
    assert np.array_equal(bed_samples(short_bed.wav)[0], bed_samples(again)[0])
    assert not np.array_equal(bed_samples(short_bed.wav)[0], bed_samples(other)[0])


@pytest.mark.timeout(1200)
def test_weights_missing_from_the_cache_say_where_to_put_them(tiny_musicgen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    engine = MusicGenEngine({"model": "facebook/musicgen-small"})
    with pytest.raises(EngineError) as raised:
        engine.run(MusicRequest(prompt="x", duration_s=1.0), tmp_path / "out")
    message = str(raised.value)
    assert "'facebook/musicgen-small' are not in the Hugging Face cache" in message
    assert "hf download facebook/musicgen-small" in message
    assert str(tmp_path / "hf") in message


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a saved MusicGen model for the transformers backend") as raised:
        MusicGenEngine({"model": str(tmp_path / "nothing-here")})
    assert raised.value.field == "engines.musicgen.settings"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no state_dict.bin, compression_state_dict.bin there"):
        MusicGenEngine({"model": str(tmp_path / "hf"), "backend": "audiocraft"})


def test_the_backend_chooses_the_environment() -> None:
    assert MusicGenEngine.resources_for(MusicGenSettings(backend="audiocraft")).env == "audiocraft"
    assert MusicGenEngine.resources_for(MusicGenSettings(backend="transformers", device="cpu")).env == "musicgen"
    with pytest.raises(ConfigError, match="transformers.*audiocraft") as raised:
        MusicGenEngine({"backend": "jax"})
    assert raised.value.field == "engines.musicgen.settings.backend"


def test_an_unbuilt_environment_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODFORGE_HOME", str(tmp_path / "fresh-home"))
    engine = MusicGenEngine({"model": "facebook/musicgen-small"})
    with pytest.raises(EngineError, match="run `podforge envs build musicgen`"):
        engine.run(MusicRequest(prompt="x", duration_s=1.0), tmp_path)


def test_resources_follow_the_model_size_and_device() -> None:
    assert MusicGenEngine.resources_for(MusicGenSettings()).model_dump() == {"device": "cuda", "vram_gb": 3.0, "env": "musicgen", "cpu_fallback": True}
    assert MusicGenEngine.resources_for(MusicGenSettings(model="facebook/musicgen-large")).vram_gb == 16.0
    assert MusicGenEngine.resources_for(MusicGenSettings(model="facebook/musicgen-melody", vram_gb=6)).vram_gb == 6.0
    assert MusicGenEngine.resources_for(MusicGenSettings(device="cpu")).device == "cpu"


def test_the_loop_seam_continues_the_waveform() -> None:
    rate, samples, seam = 8000, 8000, 400
    # 50.25 periods in one second: a plain cut jumps from the crest back to zero, a loud click
    tone = np.sin(2 * np.pi * 50.25 * np.arange(samples + seam) / rate).astype(np.float32)
    looped = make_loop(tone, samples)
    typical_step = np.abs(np.diff(tone)).max()
    plain_cut_jump = abs(float(tone[samples - 1] - tone[0]))
    seam_jump = abs(float(looped[-1] - looped[0]))
    assert plain_cut_jump > 5 * typical_step  # the test signal really would click
    assert seam_jump <= typical_step * 1.01
    assert len(looped) == samples
    assert np.array_equal(looped[seam:], tone[seam:samples])  # only the seam is touched


def test_the_loop_needs_the_extra_tail() -> None:
    with pytest.raises(EngineError, match="fewer than"):
        make_loop(np.zeros(10, dtype=np.float32), 20)


# --- the audiocraft backend -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_audiocraft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    envs.build("audiocraft", log=lambda line: None)
    return make_tiny_audiocraft_musicgen(tmp_path_factory.mktemp("tiny-audiocraft"))


@pytest.mark.heavy
@pytest.mark.timeout(2400)
def test_the_audiocraft_backend_makes_exact_continued_and_repeatable_beds(tiny_audiocraft: Path, tmp_path: Path) -> None:
    engine = MusicGenEngine({"backend": "audiocraft", "model": str(tiny_audiocraft), **TINY_SETTINGS})
    short = engine.run(MusicRequest(prompt="warm calm lo-fi piano", duration_s=0.5, seed=3), tmp_path / "short")
    audio, rate = bed_samples(short.wav)
    assert rate == MODEL_RATE and len(audio) == 0.5 * MODEL_RATE and np.abs(audio).max() > 0.0
    assert "MusicGen (audiocraft" in short.description and "1 window" in short.description

    duration_s = 2.37
    long = engine.run(MusicRequest(prompt="upbeat electronic intro", duration_s=duration_s, seed=5), tmp_path / "long")
    assert len(bed_samples(long.wav)[0]) == round(duration_s * MODEL_RATE)
    assert f"{1 + math.ceil((2.57 - 1.0) / 0.7)} window(s)" in long.description  # continued with generate_continuation

    again = engine.run(MusicRequest(prompt="warm calm lo-fi piano", duration_s=0.5, seed=3), tmp_path / "again")
    other = engine.run(MusicRequest(prompt="warm calm lo-fi piano", duration_s=0.5, seed=4), tmp_path / "other")
    assert np.array_equal(bed_samples(again.wav)[0], audio)
    assert not np.array_equal(bed_samples(other.wav)[0], audio)
