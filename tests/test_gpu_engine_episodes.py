"""Whole episodes through the GPU engines' isolated environments, on tiny random models (CPU here).

The sound is noise; the pipeline is real: the CLI, the flow, the runners in their environments, the
models loaded through ``from_pretrained`` / ``TTS(model_path=…, config_path=…)``, mix, video, mux.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from podforge import envs
from podforge.config import podforge_home
from podforge.media.ffmpeg import measure_loudness, probe
from tiny_models import make_tiny_musicgen, make_tiny_vits

SCRIPT = "---\ntitle: Engines {tag}\nhosts:\n  ALEX: {{}}\n  SAM: {{}}\n---\nALEX: A short line from a tiny model.\nSAM: And a second voice, for the record.\n"
TINY_MODELS = (
    "engines:\n  musicgen:\n    settings: {{model: {model}, loop_s: 4.0, window_s: 1.0, overlap_s: 0.3, crossfade_s: 0.2}}\n"
    "default_voices: [joe, joe-bright, vits-tiny-local]  # `--speech coqui` deals the coqui voices listed here\n"
    "qa: {{asr: off}}  # the tiny random voices speak noise: every line would be retaken, then flagged\n"
)


def run_episode(tmp_path, tag: str, *flags: str):
    script = tmp_path / f"{tag}.md"
    script.write_text(SCRIPT.format(tag=tag))
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_MODELS.format(model=podforge_home() / "models" / "musicgen-tiny"))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "podforge", "run", str(script), "-c", str(config), "--out", str(out), *flags],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / f"engines-{tag}"


def assert_valid_episode(episode) -> dict[str, str]:
    info = probe(episode / "episode.mp4")
    assert sorted((s.kind, s.codec) for s in info.streams) == [("audio", "aac"), ("video", "h264")]
    assert abs(measure_loudness(episode / "episode.mp3").integrated_lufs + 16) <= 1.0
    manifest = json.loads((episode / "manifest.json").read_text())
    return {step["step"]: step["engine"] for step in manifest["steps"]}


@pytest.fixture(scope="module")
def tiny_musicgen_model():
    envs.build("musicgen", log=lambda line: None)
    return make_tiny_musicgen(podforge_home() / "models" / "musicgen-tiny")


@pytest.mark.timeout(1800)
def test_an_episode_with_a_musicgen_bed(tiny_musicgen_model, tmp_path):
    engines = assert_valid_episode(run_episode(tmp_path, "musicgen", "--music", "musicgen"))
    assert engines["music"] == "musicgen" and engines["speech"] == "piper"


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_an_episode_with_coqui_voices_and_a_musicgen_bed(tiny_musicgen_model, tmp_path):
    envs.build("coqui", log=lambda line: None)
    make_tiny_vits(podforge_home() / "models" / "vits-tiny")
    engines = assert_valid_episode(run_episode(tmp_path, "coqui", "--speech", "coqui", "--music", "musicgen"))
    assert engines["speech"] == "coqui" and engines["music"] == "musicgen"
