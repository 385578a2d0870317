"""MusicGen LoRA training (``train-music``): prepare, labels, the licence gate, VRAM, the estimate, the music
choice of an episode, and the whole flow on a tiny random MusicGen in the real ``musicgen`` environment
(peft, librosa, transformers).

The training run is killed with SIGKILL right after its checkpoint at step 2 (the runner's fault injection,
so the kill lands at the same point every time); Prefect retries the task, and the step counter shows it
resumed from that checkpoint. The finished adapter then makes a bed in an episode (``--music musicgen:STYLE``).
"""

from __future__ import annotations

import json
import math
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from podforge import cost, envs
from podforge.caching import canonical
from podforge.cli import _engine_overrides
from podforge.config import load_config, podforge_home
from podforge.engines.base import MusicRequest
from podforge.engines.musicgen import adapter_sha256, adapters_dir
from podforge.engines.registry import load_engine
from podforge.errors import ConfigError
from podforge.gpu import GpuInfo
from podforge.planning import plan_episode
from podforge.script import parse_script
from podforge.training.dataset import ClipLabels, DatasetManifest, DatasetSpec, assign_splits, fill_template, merge_labels
from podforge.training.pipeline import licence_gate, read_progress, sample_engine, sample_prompts
from podforge.training.prepare import Clip, find_audio, prepare
from podforge.training.settings import PrepareSettings
from podforge.training.vram import fit_findings, vram_need
from tiny_models import make_tiny_musicgen

RATE = 32000
TINY_ENGINE = {"window_s": 1.0, "overlap_s": 0.3, "crossfade_s": 0.2, "top_k": 50}


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio.astype(np.float32), rate, subtype="PCM_16")
    return path


def tone(seconds: float, freq: float, level: float = 0.3, rate: int = RATE) -> np.ndarray:
    return level * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


def click_track(seconds: float, bpm: float, rate: int = RATE) -> np.ndarray:
    """Short noise bursts on every beat, as a metronome sounds."""
    audio = np.zeros(round(seconds * rate))
    burst = np.random.default_rng(1).standard_normal(320) * np.hanning(320) * 0.5
    for beat in np.arange(0, seconds, 60 / bpm):
        start = round(beat * rate)
        audio[start : start + 320] += burst[: len(audio) - start]
    return audio


# --- prepare ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    write(root / "tones" / "a440.wav", tone(8, 440))
    write(root / "noise.wav", np.random.default_rng(0).standard_normal(12 * 44100) * 0.1, rate=44100)  # resampled to 32 kHz
    write(root / "silence.wav", np.zeros(10 * RATE))
    write(root / "clipped.wav", np.clip(tone(8, 220, level=3.0), -1, 1))
    write(root / "short.wav", tone(3, 330))
    long = tone(120, 262)
    for gap in (25, 50, 75, 100):  # 0.4 s of near-silence: where the 2-minute file should be cut
        long[round((gap - 0.2) * RATE) : round((gap + 0.2) * RATE)] *= 0.001
    write(root / "long" / "two-minutes.wav", long)
    write(root / "clicks.wav", click_track(10, 100))
    (root / "notes.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def prepared(raw_dataset, tmp_path_factory):
    return prepare(find_audio(raw_dataset), tmp_path_factory.mktemp("clips"), PrepareSettings())


def test_ingest_finds_audio_recursively(raw_dataset):
    assert [s.relative for s in find_audio(raw_dataset)] == [
        "clicks.wav", "clipped.wav", "long/two-minutes.wav", "noise.wav", "short.wav", "silence.wav", "tones/a440.wav",
    ]


def test_prepare_chunks_long_files_at_quiet_points_and_drops_bad_clips_with_reasons(prepared):
    by_source: dict[str, list[Clip]] = {}
    for clip in prepared.clips:
        by_source.setdefault(clip.source, []).append(clip)
    long = by_source["long/two-minutes.wav"]
    assert len(long) == 5
    assert [c.start_s for c in long] == pytest.approx([0, 25, 50, 75, 100], abs=0.2)  # inside each 0.4 s quiet gap
    assert all(5 <= c.duration_s <= 30 for c in prepared.clips)
    assert {s: len(c) for s, c in by_source.items()} == {"long/two-minutes.wav": 5, "noise.wav": 1, "tones/a440.wav": 1, "clicks.wav": 1}
    reasons = {d.source: d.reason for d in prepared.dropped}
    assert reasons.keys() == {"silence.wav", "clipped.wav", "short.wav"}
    assert reasons["silence.wav"].startswith("silent")
    assert reasons["clipped.wav"].startswith("clipped")
    assert reasons["short.wav"].startswith("too short (3.0 s")
    noise = by_source["noise.wav"][0]
    info = soundfile.info(noise.wav)
    assert (info.samplerate, info.channels, info.frames) == (RATE, 1, 12 * RATE)


def test_labels_merge_user_json_over_dataset_defaults_over_estimates():
    spec = DatasetSpec(licence="own", labels=ClipLabels(genre="lo-fi", mood="calm", instruments=["piano"]))
    labels, sources = merge_labels(spec, ClipLabels(mood="upbeat", bpm=128), {"bpm": 90.0, "key": "A minor"})
    assert (labels.mood, labels.genre, labels.bpm, labels.key) == ("upbeat", "lo-fi", 128, "A minor")
    assert sources == {"genre": "dataset", "mood": "user", "bpm": "user", "key": "estimated", "instruments": "dataset", "description": "template"}
    assert labels.description == "upbeat, lo-fi, 128 BPM, A minor, with piano"
    own, _ = merge_labels(spec, ClipLabels(description="my own words"), None)
    assert own.description == "my own words"
    assert fill_template("{mood}, {genre}, {bpm} BPM, {key}", {"genre": "jazz"}) == "jazz"
    with pytest.raises(ConfigError, match="unknown field {tempo}"):
        fill_template("{tempo}", {})


def test_the_split_holds_out_whole_source_files(prepared):
    splits = assign_splits(prepared.clips, 0.15)
    held = {c.source for c in prepared.clips if splits[c.id] == "validation"}
    assert len(held) == 1 and sum(v == "validation" for v in splits.values()) >= 1
    assert all(splits[c.id] == "validation" for c in prepared.clips if c.source in held)


# --- licence, VRAM, estimate ------------------------------------------------------------------------------


def test_the_licence_gate(tmp_path):
    assert licence_gate(DatasetSpec(licence="own"), tmp_path, False) is None
    assert "grey area" in licence_gate(DatasetSpec(licence="purchased"), tmp_path, False)
    with pytest.raises(ConfigError, match="--i-have-the-rights") as refused:
        licence_gate(DatasetSpec(licence="copyrighted"), tmp_path, False)
    assert refused.value.field == "licence" and refused.value.file == str(tmp_path / "dataset.yaml")
    assert "--i-have-the-rights was given" in licence_gate(DatasetSpec(licence="copyrighted"), tmp_path, True)


def test_train_music_refuses_copyrighted_music_in_one_line(tmp_path):
    from podforge.cli import app

    (tmp_path / "dataset.yaml").write_text("licence: copyrighted\n")
    write(tmp_path / "song.wav", tone(6, 440))
    result = CliRunner().invoke(app, ["train-music", str(tmp_path), "--name", "style"], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert f"{tmp_path / 'dataset.yaml'}: licence: licence: copyrighted" in result.output
    missing = tmp_path / "undeclared"
    missing.mkdir()
    result = CliRunner().invoke(app, ["train-music", str(missing), "--name", "style"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "dataset.yaml: licence: missing" in result.output


def test_vram_need_follows_the_settings_and_the_doctor_warns_when_it_does_not_fit():
    settings = load_config().train_music
    small = vram_need(settings)
    medium = vram_need(settings.model_copy(update={"base": "facebook/musicgen-medium"}))
    no_checkpointing = vram_need(settings.model_copy(update={"base": "facebook/musicgen-medium", "optim": settings.optim.model_copy(update={"gradient_checkpointing": False})}))
    assert small.total_gb < medium.total_gb < 12 < no_checkpointing.total_gb  # the notes: medium LoRA fits 12 GB only with the optimisations
    assert vram_need(settings.model_copy(update={"lora": settings.lora.model_copy(update={"rank": 64})})).lora_gb > small.lora_gb
    rtx3060 = [GpuInfo(index=0, name="NVIDIA GeForce RTX 3060", uuid="GPU-0", memory_total_bytes=12 * 1024**3, driver_version="550.54")]
    assert fit_findings(settings, rtx3060)[0][0] == "ok"
    level, message = fit_findings(settings.model_copy(update={"base": "facebook/musicgen-medium", "optim": settings.optim.model_copy(update={"gradient_checkpointing": False})}), rtx3060)[0]
    assert level == "warn" and "try gradient checkpointing" in message


def test_the_training_estimate_reproduces_the_notes():
    # The notes: 10 songs (~30 min) take 2-4 h on an RTX 3060, 50 songs (~2.5 h) 8-16 h, 200 songs (~10 h) 2-4 days.
    quick = cost.estimate_training(0.5, "rtx3060")
    assert (quick.gpu_hours.low, quick.gpu_hours.high) == pytest.approx((2.0, 4.0))
    assert (cost.estimate_training(2.5, "rtx3060").gpu_hours.high, cost.estimate_training(10, "rtx3060").gpu_hours.low) == pytest.approx((16.0, 48.0))
    assert cost.estimate_training(1.5, "rtx3060").gpu_hours.low == pytest.approx(5.0)  # halfway between the first two rows
    # A40 ~$0.79/h and A100 ~$1.50/h (the notes' prices); their speed-ups are stated assumptions
    a40, a100 = cost.estimate_training(0.5, "a40"), cost.estimate_training(0.5, "a100")
    assert a40.usd_per_hour == pytest.approx(0.79) and a100.usd_per_hour == pytest.approx(1.50)
    assert a40.cost_usd.high == pytest.approx(4.0 / 2.5 * 0.79) and a100.cost_usd.low == pytest.approx(2.0 / 4.0 * 1.50)
    measured = cost.estimate_training(0.5, "a40", steps=3600, steps_per_second=0.5)
    assert measured.gpu_hours.low == measured.gpu_hours.high == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="unknown training GPU 't4'"):
        cost.estimate_training(1, "t4")


def sparse_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    """A valid 16-bit mono WAV of ``seconds`` of silence, written sparsely (the data is all zeros)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(b"")
    frames = round(seconds * rate)
    with open(path, "r+b") as handle:
        handle.seek(4)
        handle.write((36 + frames * 2).to_bytes(4, "little"))
        handle.seek(40)
        handle.write((frames * 2).to_bytes(4, "little"))
        handle.truncate(44 + frames * 2)


def test_estimate_train_prices_a_dataset_folder(tmp_path):
    from podforge.cli import app

    for song in range(10):  # "10 songs (~30 min audio)"
        sparse_wav(tmp_path / f"song{song}.wav", 180)
    result = CliRunner().invoke(app, ["estimate", "--train", str(tmp_path), "--gpu", "a40"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "10 files, 30.0 min of audio (0.50 h)" in result.output
    assert "0.80 - 1.60" in result.output and "$0.63 - $1.26" in result.output  # A40: 2-4 h / 2.5, at $0.79/h
    assert "2.00 - 4.00" in result.output  # and the RTX 3060 row: the notes' 2-4 hours
    refused = CliRunner().invoke(app, ["estimate", "--train", str(tmp_path), "--gpu", "t4"], env={"COLUMNS": "250"})
    assert refused.exit_code == 1 and "unknown training GPU 't4'" in refused.output


# --- an episode's music choice ----------------------------------------------------------------------------


def stand_in_adapter(name: str, weights: bytes) -> Path:
    """An adapter folder as ``train-music`` publishes it, with stand-in bytes: planning only checks and hashes
    the files, it never loads them (the flow test below loads a trained one)."""
    lora = adapters_dir() / name / "lora"
    lora.mkdir(parents=True, exist_ok=True)
    (lora / "adapter_config.json").write_text('{"r": 8}')
    (lora / "adapter_model.safetensors").write_bytes(weights)
    return lora


def music_plan(front_matter: str, overrides: dict | None = None, source: str = "styled.md"):
    script = parse_script(f"---\ntitle: Styled\n{front_matter}---\nALEX: A bed in the show's own sound.\n", source=source)
    return plan_episode(load_config(overrides=overrides), script, [], check_environments=False)


def test_the_music_flag_and_the_front_matter_choose_the_same_adapter_keyed_by_content():
    lora = stand_in_adapter("plan-style", b"weights, first training")
    by_flag = music_plan("music: calm lo-fi\n", _engine_overrides(None, "musicgen:plan-style", None))
    by_front_matter = music_plan("music: {engine: musicgen, adapter: plan-style, prompt: calm lo-fi}\n")
    assert by_flag.music == by_front_matter.music and by_flag.music_request == by_front_matter.music_request
    assert by_flag.music.name == "musicgen" and by_flag.music.files == {"adapter": lora}
    assert by_flag.music_request.prompt == "calm lo-fi"
    assert music_plan("music: calm lo-fi\n").music.name == "procedural"  # a prompt alone keeps the configured engine
    assert music_plan("music: {adapter: plan-style}\n", {"use": {"music": "musicgen"}}).music == by_flag.music

    before = canonical(by_flag.music)
    (lora / "adapter_model.safetensors").write_bytes(b"weights, retrained")  # same name, new content: a new bed
    assert canonical(music_plan("music: {engine: musicgen, adapter: plan-style}\n").music) != before


def test_a_missing_adapter_is_one_line_naming_where_it_was_asked_for(tmp_path):
    with pytest.raises(ConfigError) as from_front_matter:
        music_plan("music: {engine: musicgen, adapter: nope}\n", source="ep.md")
    assert from_front_matter.value.one_line().startswith("ep.md: music.adapter: no LoRA adapter 'nope' in ")
    assert "podforge train-music DATASET_DIR --name nope" in from_front_matter.value.message
    with pytest.raises(ConfigError, match="unknown setting for engine 'procedural'") as wrong_engine:
        music_plan("music: {engine: procedural, adapter: plan-style}\n", source="ep.md")
    assert wrong_engine.value.file == "ep.md" and wrong_engine.value.field == "music.adapter"

    from podforge.cli import app

    script = tmp_path / "styled.md"
    script.write_text("---\ntitle: Styled\n---\nALEX: Hello.\n")
    result = CliRunner().invoke(app, ["run", str(script), "--out", str(tmp_path / "out"), "--music", "musicgen:nope"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "use.music.adapter: no LoRA adapter 'nope'" in result.output
    assert not (tmp_path / "out").exists()


# --- the whole flow on a tiny MusicGen ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_base():
    envs.build("musicgen", log=lambda line: None)
    return make_tiny_musicgen(podforge_home() / "models" / "musicgen-tiny")


def test_labels_are_estimated_in_the_training_environment(tiny_base, prepared):
    from podforge.training.pipeline import estimate_labels

    clicks = next(c for c in prepared.clips if c.source == "clicks.wav")
    a440 = next(c for c in prepared.clips if c.source == "tones/a440.wav")
    labels = estimate_labels([clicks, a440], podforge_home() / "label-test")
    assert labels[clicks.sha256]["bpm"] == pytest.approx(100, abs=2)
    assert labels[a440.sha256]["key"].startswith("A ")
    assert labels[a440.sha256]["loudness_dbfs"] == pytest.approx(20 * math.log10(0.3 / math.sqrt(2)), abs=0.5)


@pytest.fixture(scope="module")
def training_config(tiny_base, tmp_path_factory) -> Path:
    config = tmp_path_factory.mktemp("config") / "train.yaml"
    config.write_text(
        f"train_music:\n  base: {tiny_base}\n  device: cpu\n"
        "  prepare: {min_clip_s: 2.0, max_clip_s: 4.0, validation_fraction: 0.2}\n"
        "  optim: {gradient_accumulation: 1, epochs: 2, learning_rate: 5.0e-3, lr_schedule: constant_with_warmup, warmup_steps: 1}\n"
        "  checkpoints: {every_steps: 2, early_stopping_patience: 0}\n"
        f"  samples: {{count: 1, duration_s: 0.5, engine_settings: {json.dumps(TINY_ENGINE)}}}\n"
    )
    return config


@pytest.fixture(scope="module")
def trained(training_config, prefect_api, tmp_path_factory):
    """Train the ``tiny-style`` adapter on 6 clips for 2 epochs; SIGKILL the run after its step-2 checkpoint."""
    from flows.train_music import train_music

    root = tmp_path_factory.mktemp("dataset")
    (root / "dataset.yaml").write_text("licence: own\nlabels: {genre: test tones, instruments: [sine]}\n")
    for number in range(6):
        audio = tone(3, 220 + 55 * number) + click_track(3, 90 + 10 * number) * 0.5
        write(root / f"clip{number}.wav", audio)
        (root / f"clip{number}.json").write_text(json.dumps({"mood": ["calm", "bright"][number % 2], "bpm": 90 + 10 * number, "key": "A minor"}))
    os.environ["PODFORGE_TRAIN_KILL_AFTER_CHECKPOINT"] = "2"
    try:
        return train_music(dataset_dir=str(root), name="tiny-style", config=[str(training_config)])
    finally:
        del os.environ["PODFORGE_TRAIN_KILL_AFTER_CHECKPOINT"]


@pytest.mark.timeout(1800)
def test_a_killed_training_resumes_from_its_last_checkpoint(trained):
    events = read_progress(trained.training.progress)
    starts = [e for e in events if e["event"] == "start"]
    assert [s["resumed_from"] for s in starts] == [0, 2]  # killed after the step-2 checkpoint, resumed from it
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # no step was trained twice, none skipped
    assert trained.training.resumed_from_step == 2 and trained.training.steps_this_run == 8


@pytest.mark.timeout(1800)
def test_two_epochs_on_six_clips_lower_the_loss_and_publish_the_adapter(trained):
    result, info = trained.training, trained.adapter
    assert (result.epochs_done, result.steps, len(result.history)) == (2, 10, 2)
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[1]["val_loss"] < result.history[0]["val_loss"]
    assert sorted(p.name for p in info.lora.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert info.sha256 == adapter_sha256(info.lora)
    card = (info.path / "README.md").read_text()
    dataset = json.loads((info.path / "dataset.json").read_text())
    assert dataset["dataset_sha256"] in card and "`own`" in card and "rank 8, alpha 16" in card
    assert len(dataset["clips"]) == 6 and sum(c["split"] == "validation" for c in dataset["clips"]) == 1
    assert dataset["clips"][0]["labels"]["description"].endswith("test tones, 90 BPM, A minor, with sine")
    assert (info.path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in trained.samples] == ["sample-1.wav"] and (info.path / "samples" / "sample-1.wav").is_file()
    assert "| clip0-000 |" in trained.report and "resumed from step 2" in trained.report
    assert (info.path / "REPORT.md").read_text() == trained.report


@pytest.mark.timeout(1800)
def test_the_adapter_changes_what_musicgen_generates(trained, training_config, tmp_path):
    """The report's sample came from the adapter; the base model with the same settings, prompt and seed differs."""
    config = load_config([training_config])
    styled = sample_engine(config, trained.adapter.lora, [])
    base = styled.model_copy(update={"settings": {**styled.settings, "adapter": None}, "files": {}})
    manifest = DatasetManifest.model_validate_json((trained.adapter.path / "dataset.json").read_text())
    request = MusicRequest(prompt=sample_prompts(manifest, 1)[0], duration_s=0.5, seed=config.train_music.samples.seed + 1)
    made = load_engine(base).run(request, tmp_path / "base")
    assert "LoRA tiny-style sha256:" not in made.description and made.notes == {}
    assert not np.array_equal(soundfile.read(made.wav)[0], soundfile.read(trained.samples[0])[0])


@pytest.mark.timeout(1800)
def test_adapters_list_and_an_episode_with_the_adapter(trained, tiny_base, prefect_api, tmp_path):
    from flows.episode import episode
    from podforge.cli import app

    listed = CliRunner().invoke(app, ["adapters", "list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "tiny-style" in listed.output and trained.adapter.sha256[:16] in listed.output

    script = tmp_path / "styled.md"
    script.write_text("---\ntitle: Styled\nhosts:\n  ALEX: {}\n---\nALEX: A bed in the show's own sound.\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"engines:\n  musicgen:\n    settings: {{model: {tiny_base}, loop_s: 2.0, window_s: 1.0, overlap_s: 0.3, crossfade_s: 0.2}}\n"
        "mix: {intro_s: 1.0, outro_s: 1.0}\nvideo: {width: 320, height: 180, fps: 10}\nqa: {asr: off}\n"  # only the bed is under test
    )
    overrides = _engine_overrides(None, "musicgen:tiny-style", None)  # what `podforge run --music musicgen:tiny-style` passes
    manifest = episode(script=str(script), config=[str(config)], overrides=overrides, out_dir=str(tmp_path / "out"))
    music = next(step for step in manifest.steps if step.step == "music")
    assert music.engine == "musicgen"
    assert music.notes == {"adapter": "tiny-style", "adapter_sha256": trained.adapter.sha256}
    written = json.loads((manifest.out_dir / "manifest.json").read_text())
    assert next(step for step in written["steps"] if step["step"] == "music")["notes"] == music.notes
