"""Step keys follow content, engine and parameters (never paths, run ids or timings); cached results are JSON,
checked before reuse."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from podforge import caching
from podforge.caching import ResultSerializer, evict_if_broken, file_fingerprint, results_dir, step_key
from podforge.config import load_config
from podforge.engines.base import EngineSpec, SpeechResult
from podforge.engines.registry import resolve_engine
from podforge.steps import StepOutput, StepRecord, step_task
from podforge.timing import Alignment

SPEC = EngineSpec(name="piper", impl="podforge.engines.piper:PiperEngine", kind="speech", version="1", settings={"pitch_semitones": 0})


def test_same_content_at_another_path_gives_the_same_key(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "elsewhere" / "b.wav"
    b.parent.mkdir()
    a.write_bytes(b"RIFF same bytes")
    b.write_bytes(b"RIFF same bytes")
    assert step_key("mix", "1", {"audio": a}) == step_key("mix", "1", {"audio": b})


def test_changed_content_changes_the_key(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"one")
    before = step_key("mix", "1", {"audio": path})
    path.write_bytes(b"two")
    assert step_key("mix", "1", {"audio": path}) != before


def test_engine_settings_version_and_step_are_in_the_key():
    base = step_key("speech", "1", {"engine": SPEC, "text": "hi"})
    assert step_key("speech", "1", {"engine": SPEC.model_copy(update={"settings": {"pitch_semitones": 4}}), "text": "hi"}) != base
    assert step_key("speech", "1", {"engine": SPEC.model_copy(update={"version": "2"}), "text": "hi"}) != base
    assert step_key("speech", "2", {"engine": SPEC, "text": "hi"}) != base, "the step's own version"
    assert step_key("music", "1", {"engine": SPEC, "text": "hi"}) != base
    assert step_key("speech", "1", {"engine": SPEC, "text": "hi!"}) != base
    assert step_key("speech", "1", {"text": "hi", "engine": SPEC}) == base  # order of inputs does not matter


def test_where_an_engine_runs_and_what_it_is_called_are_not_in_the_key():
    """Resources are a placement (GPU here, CPU there), the registry name an alias: neither changes the output."""
    renamed = SPEC.model_copy(update={"name": "my-piper"})
    moved = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"vram_gb": 4.0})})
    assert step_key("speech", "1", {"engine": renamed}) == step_key("speech", "1", {"engine": SPEC}) == step_key("speech", "1", {"engine": moved})


def test_a_model_file_named_by_path_is_keyed_by_content(tmp_path):
    """Replacing a model in place must not reuse results made with the old one."""
    model, config = tmp_path / "model.pth", tmp_path / "config.json"
    model.write_bytes(b"weights v1")
    config.write_text("{}")
    voice = {"model_path": str(model), "config_path": str(config)}
    spec = resolve_engine(load_config(), "coqui", "speech", settings=voice)
    assert spec.files == {"model_path": model, "config_path": config}
    before = step_key("speech", "1", {"voice": spec})
    model.write_bytes(b"weights v2")
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 1_000_000))
    again = resolve_engine(load_config(), "coqui", "speech", settings=voice)
    assert again.settings == spec.settings, "the settings (paths) are the same ..."
    assert step_key("speech", "1", {"voice": again}) != before, "... the key is not"


def test_file_hashes_are_memoised_on_disk_by_size_and_mtime(tmp_path, monkeypatch):
    big = tmp_path / "model.onnx"
    big.write_bytes(os.urandom(1 << 20))
    digest = file_fingerprint(big)
    caching._file_hashes.clear()
    monkeypatch.setattr(caching, "sha256_file", lambda path: pytest.fail("hashed again although size and mtime are unchanged"))
    assert file_fingerprint(big) == digest
    monkeypatch.undo()
    caching._file_hashes.clear()
    big.write_bytes(os.urandom(1 << 20))
    assert file_fingerprint(big) != digest


def test_a_step_output_keys_on_its_result_not_on_when_it_ran(tmp_path):
    wav = tmp_path / "speech.wav"
    wav.write_bytes(b"audio")
    result = SpeechResult(wav=wav, sample_rate=22050, duration_s=1.0, alignment=Alignment())
    first = StepOutput(record=StepRecord(step="speech", engine="piper", seconds=1.2, key="k", made_in="run-1#1"), result=result)
    second = StepOutput(record=StepRecord(step="speech", engine="piper", seconds=9.9, key="k", made_in="run-2#1"), result=result)
    assert step_key("dialogue", "1", {"clips": [first]}) == step_key("dialogue", "1", {"clips": [second]})


def test_directories_and_missing_files_are_keyed_by_what_they_hold(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = step_key("speech", "1", {"model": model})
    (model / "weights.bin").write_bytes(b"\x00\x01")
    assert step_key("speech", "1", {"model": model}) != before
    assert step_key("speech", "1", {"model": Path(tmp_path / "absent.onnx")}) != step_key("speech", "1", {"model": Path(tmp_path / "other.onnx")})


def test_a_step_declares_only_parameters_it_takes():
    with pytest.raises(TypeError, match="'voice'"):

        @step_task("speech", key=("text", "voice"))
        def speech(text: str) -> None: ...


# --- stored results -----------------------------------------------------------------------------------


def speech_output(tmp_path: Path) -> StepOutput:
    wav = tmp_path / "speech.wav"
    wav.write_bytes(b"RIFF" + bytes(2000))
    result = SpeechResult(wav=wav, sample_rate=22050, duration_s=1.0, alignment=Alignment())
    return StepOutput(record=StepRecord(step="speech", engine="piper", key="k", made_in="run#1"), result=result)  # as steps make them


def store(key: str, payload: bytes, serializer: str = "podforge-json") -> Path:
    """A result record as Prefect writes it (metadata + serialized result)."""
    results_dir().mkdir(parents=True, exist_ok=True)
    record = {"metadata": {"storage_key": str(results_dir() / key), "serializer": {"type": serializer}}, "result": payload.decode("latin-1")}
    path = results_dir() / key
    path.write_text(json.dumps(record))
    return path


def test_results_round_trip_as_json_with_the_hashes_of_their_files(tmp_path):
    output = speech_output(tmp_path)
    blob = ResultSerializer().dumps(output)
    payload = json.loads(blob)
    assert payload["type"] == "podforge.steps:StepOutput" and payload["args"] == ["podforge.engines.base:SpeechResult"]
    assert payload["files"] == {str(output.result.wav): file_fingerprint(output.result.wav)}
    loaded = ResultSerializer().loads(blob)
    assert loaded == output and isinstance(loaded.result, SpeechResult)


def test_only_podforge_models_are_loaded():
    evil = json.dumps({"type": "os:system", "args": [], "value": {}, "files": {}}).encode()
    with pytest.raises(ValueError, match="may not be"):
        ResultSerializer().loads(evil)


def test_an_intact_cached_result_is_kept(tmp_path):
    path = store("intact", ResultSerializer().dumps(speech_output(tmp_path)))
    assert not evict_if_broken("speech", "intact")
    assert path.is_file()


@pytest.mark.parametrize("damage", ["deleted", "truncated", "overwritten"])
def test_a_cached_result_whose_file_is_damaged_is_evicted(tmp_path, damage):
    output = speech_output(tmp_path)
    path = store(f"damaged-{damage}", ResultSerializer().dumps(output))
    wav = output.result.wav
    if damage == "deleted":
        wav.unlink()
    elif damage == "truncated":
        wav.write_bytes(wav.read_bytes()[:100])
    else:
        wav.write_bytes(b"RIFF" + b"\x01" * 2000)  # same size, other content
        os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 1_000_000))
    assert evict_if_broken("speech", f"damaged-{damage}")
    assert not path.exists()


def test_a_pickled_cache_entry_is_never_loaded(tmp_path):
    """Write access to the cache must not be code execution: an entry in another serializer is deleted unread."""
    path = store("pickled", pickle.dumps({"anything": 1}), serializer="pickle")
    assert evict_if_broken("speech", "pickled")
    assert not path.exists()
