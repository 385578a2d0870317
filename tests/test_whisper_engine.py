"""The Whisper recogniser's placement: in-process on the CPU, the isolated ``whisper`` env on a GPU, and a
GPU spec without a GPU falling back to the CPU in-process. The heavy test builds the ``whisper``
environment (faster-whisper, CTranslate2, cuBLAS: about 1 GB) and runs the runner on this GPU-less machine,
where it says so and hears the line on the CPU with the bundled tiny.en weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podforge import envs
from podforge.config import GpuSettings, load_config
from podforge.engines.base import AsrRequest, SpeechRequest
from podforge.engines.registry import load_engine, resolve_engine
from podforge.engines.whisper import WhisperEngine, WhisperSettings, bundled_model_dir, model_location
from podforge.planning import place
from podforge.qa import score
from podforge.runner import run_in_env

LINE = "Every line you hear is its own task."


def test_the_default_recogniser_runs_in_process_and_the_gpu_one_in_its_environment(tmp_path, monkeypatch):
    config = load_config()
    cpu = resolve_engine(config, config.qa.asr, "asr")
    assert cpu.resources.device == "cpu" and cpu.resources.env is None
    gpu = resolve_engine(config, "whisper-gpu", "asr")
    assert (gpu.resources.device, gpu.resources.env, gpu.resources.cpu_fallback) == ("cuda", "whisper", True)
    assert gpu.resources.vram_gb == 5.0  # a large-v3 model
    fallback = place(gpu, GpuSettings(), gpus=[])  # no GPU here: the CPU, in-process, its own cache key
    assert fallback.settings["device"] == "cpu" and fallback.resources.device == "cpu"
    # model names: "bundled", a folder under $PODFORGE_HOME/models, else a name for the local HF cache only
    monkeypatch.setenv("PODFORGE_HOME", str(tmp_path))
    (tmp_path / "models" / "my-whisper").mkdir(parents=True)
    assert model_location("bundled") == str(bundled_model_dir()) and (bundled_model_dir() / "model.bin").is_file()
    assert model_location("my-whisper") == str(tmp_path / "models" / "my-whisper")
    assert model_location("large-v3") == "large-v3"


def test_a_model_that_is_not_on_disk_fails_naming_the_setting_without_downloading(tmp_path, monkeypatch):
    from podforge.errors import EngineError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EngineError, match="never downloaded") as error:
        WhisperEngine({"model": "large-v3"})._loaded()
    assert error.value.field == "engines.whisper.settings.model"


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_the_whisper_runner_hears_a_line_and_says_it_ran_on_the_cpu(tmp_path):
    envs.build("whisper", log=lambda line: None)
    config = load_config(overrides={"voices": {"joe": {"settings": {"noise_scale": 0.0, "noise_w_scale": 0.0}}}})
    piper = load_engine(resolve_engine(config, "piper", "speech", settings=config.voices["joe"].settings))
    clip = piper.run(SpeechRequest(text=LINE), tmp_path)
    settings = {"model": model_location("bundled"), "device": "cuda"}  # asked for CUDA on a machine without a GPU
    options = {"language": "en", "beam_size": 1, "word_timestamps": True, "condition_on_previous_text": False, "vad_filter": False}
    response = run_in_env("whisper", "whisper", settings, {"audio": str(clip.wav), "language": "en", "options": options}, tmp_path)
    assert response.device == "cpu" and response.result["compute_type"] == "int8"
    assert score(LINE, response.result["text"]).wer <= 0.1, response.result["text"]
    assert len(response.result["words"]) >= 7 and {"faster_whisper", "ctranslate2"} <= set(response.versions)
    heard = WhisperEngine({"model": "bundled", "device": "cuda"}).run(AsrRequest(audio=clip.wav), tmp_path)  # the engine's env path
    assert heard.text == response.result["text"]


def test_an_english_only_model_refuses_another_language_in_one_clear_line(tmp_path):
    from podforge.errors import EngineError

    recogniser = load_engine(resolve_engine(load_config(), "whisper", "asr"))
    with pytest.raises(EngineError, match="hears English only, and this script is in 'de'") as error:
        recogniser.run(AsrRequest(audio=tmp_path / "never-read.wav", language="de"), tmp_path)
    assert error.value.field == "qa.asr"
    # the flow asks first and skips QA for such a script
    hears = lambda model, language: WhisperEngine.hears(WhisperSettings(model=model), language)  # noqa: E731
    assert hears("bundled", "en-US") and not hears("bundled", "de")
    assert hears("whisper-large-v3-ct2", "de") and not hears("small.en", "de")
