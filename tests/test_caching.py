"""Cache keys follow content, engine and parameters; never paths, run ids or timings."""

from __future__ import annotations

from pathlib import Path

from podforge.caching import content_key
from podforge.engines.base import EngineSpec, SpeechResult, Alignment
from podforge.steps import StepOutput, StepRecord

SPEC = EngineSpec(name="piper", impl="podforge.engines.piper:PiperEngine", kind="speech", version="1", settings={"pitch_semitones": 0})


def test_same_content_at_another_path_gives_the_same_key(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "elsewhere" / "b.wav"
    b.parent.mkdir()
    a.write_bytes(b"RIFF same bytes")
    b.write_bytes(b"RIFF same bytes")
    assert content_key("mix", {"audio": a}) == content_key("mix", {"audio": b})


def test_changed_content_changes_the_key(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"one")
    before = content_key("mix", {"audio": path})
    path.write_bytes(b"two")
    assert content_key("mix", {"audio": path}) != before


def test_engine_settings_version_and_step_are_in_the_key():
    base = content_key("speech", {"engine": SPEC, "text": "hi"})
    assert content_key("speech", {"engine": SPEC.model_copy(update={"settings": {"pitch_semitones": 4}}), "text": "hi"}) != base
    assert content_key("speech", {"engine": SPEC.model_copy(update={"version": "2"}), "text": "hi"}) != base
    assert content_key("music", {"engine": SPEC, "text": "hi"}) != base
    assert content_key("speech", {"engine": SPEC, "text": "hi!"}) != base
    assert content_key("speech", {"text": "hi", "engine": SPEC}) == base  # order of inputs does not matter


def test_a_step_output_keys_on_its_result_not_on_when_it_ran(tmp_path):
    wav = tmp_path / "speech.wav"
    wav.write_bytes(b"audio")
    result = SpeechResult(wav=wav, sample_rate=22050, duration_s=1.0, alignment=Alignment())
    first = StepOutput(record=StepRecord(step="speech", engine="piper", seconds=1.2, key="k", made_in="run-1#1"), result=result)
    second = StepOutput(record=StepRecord(step="speech", engine="piper", seconds=9.9, key="k", made_in="run-2#1"), result=result)
    assert content_key("dialogue", {"clips": [first]}) == content_key("dialogue", {"clips": [second]})


def test_directories_and_missing_files_are_keyed_by_what_they_hold(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = content_key("speech", {"model": model})
    (model / "weights.bin").write_bytes(b"\x00\x01")
    assert content_key("speech", {"model": model}) != before
    assert content_key("speech", {"model": Path(tmp_path / "absent.onnx")}) != content_key("speech", {"model": Path(tmp_path / "other.onnx")})
