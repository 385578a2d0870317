"""SadTalker's real ``inference.py`` in its own environment, on the CPU (heavy: ``make test-heavy``).

Needs a SadTalker checkout in ``SADTALKER_HOME`` (``git clone https://github.com/OpenTalker/SadTalker``; its
code is never part of Podforge) and builds the ``sadtalker`` environment (5.2 GB). Without a checkout every
test here skips and says so: CI and fresh clones cannot reach GitHub. No released weights are needed
except by the last test, which skips without them.

The smoke run (``test_real_inference_turns_2_s_of_speech_into_a_video_on_random_weights``):

* real: the environment, SadTalker's ``inference.py`` and all of its code from the checkout, every one of
  its checkpoint loaders, on files that ``external/sadtalker/make_random_checkpoints.py`` builds from
  SadTalker's own model classes (and facexlib's detector class), randomly initialised, in the layout the
  loaders read; the landmark network, the 3DMM ResNet, audio2exp, audio2pose, the face renderer, the
  paste-back of ``preprocess: full``, SadTalker's own ffmpeg and pydub calls; Podforge's engine, runner,
  chunk cache and chunk joiner.
* replaced: face *detection* only. With random weights RetinaFace finds no face, and SadTalker cannot go
  on without one (``crop``/``full`` raise on "no landmark", ``resize`` indexes an empty detection). The
  seam is ``tests/sadtalker_seam/sitecustomize.py``, put first on ``inference.py``'s PYTHONPATH by the
  engine's ``python_path`` setting: it makes ``RetinaFace.detect_faces`` return one fixed box (the
  detector network is still built and its random checkpoint still loaded). The landmarks inside that box
  come from the random landmark network, as everything after it does.

Random weights make a talking head of noise: what this proves is that every stage loads and runs, and that
SadTalker renders exactly ``floor(samples / 640)`` frames, which the engine's chunk plan relies on.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from podforge import envs
from podforge.caching import artifacts_dir
from podforge.engines.base import AvatarRequest
from podforge.engines.sadtalker import SadTalkerEngine, SadTalkerSettings, environment_findings, setup_findings
from podforge.media.ffmpeg import probe
from podforge.runner import run_env_python

REPO = Path(__file__).resolve().parent.parent
SEAM = Path(__file__).resolve().parent / "sadtalker_seam"
pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def checkout() -> Path:
    home = os.environ.get("SADTALKER_HOME")
    if not home:
        pytest.skip("SADTALKER_HOME is not set: these tests need a SadTalker checkout (git clone https://github.com/OpenTalker/SadTalker)")
    if not (Path(home) / "inference.py").is_file():
        pytest.skip(f"SADTALKER_HOME={home} is not a SadTalker checkout (no inference.py)")
    envs.build("sadtalker", log=lambda line: None)
    return Path(home)


@pytest.fixture(scope="module")
def random_weights(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkpoints/ and gfpgan/weights/ of randomly initialised SadTalker and face models."""
    out = tmp_path_factory.mktemp("sadtalker-random")
    script = REPO / "external" / "sadtalker" / "make_random_checkpoints.py"
    made = run_env_python("sadtalker", [str(script), "--sadtalker-home", str(checkout), "--out", str(out)], timeout_s=1800)
    assert made.ok, made.tail
    return out


def speech_like(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A 180 Hz tone switched on and off three times a second: syllables, as far as SadTalker's audio model can tell."""
    t = np.arange(round(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), rate)
    return path


def photograph(path: Path) -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.timeout(7200)
def test_real_inference_turns_2_s_of_speech_into_a_video_on_random_weights(checkout: Path, random_weights: Path, tmp_path: Path) -> None:
    engine = SadTalkerEngine({
        "home": str(checkout),
        "checkpoint_dir": str(random_weights / "checkpoints"),
        "gfpgan_dir": str(random_weights / "gfpgan" / "weights"),
        "device": "cpu",
        "preprocess": "full",
        "still": True,
        "python_path": [str(SEAM)],
        "chunk_timeout_s": 7000,
    })
    request = AvatarRequest(speaker="ALEX", portrait=photograph(tmp_path / "astronaut.png"), audio=speech_like(tmp_path / "speech.wav", 2.0), duration_s=2.0, width=256, height=256, fps=25)
    chunks_before = set(artifacts_dir().glob("sadtalker-chunk/*/chunk.mp4"))
    result = engine.run(request, tmp_path / "avatar")

    (chunk,) = set(artifacts_dir().glob("sadtalker-chunk/*/chunk.mp4")) - chunks_before  # SadTalker's own video, as the runner returned it
    assert video_frames(chunk) == 50  # floor(32000 samples / 640): what the chunk plan relies on
    assert any(stream.kind == "audio" for stream in probe(chunk).streams)  # SadTalker muxed the chunk's audio in
    assert result.notes["chunks"] == "1" and result.notes["device"] == "cpu" and result.encoder == "libx264"
    video = probe(result.video).streams[0]
    assert (video.codec, video.width, video.height, video.fps) == ("h264", 256, 256, 25.0)
    assert result.frames == 50 and video_frames(result.video) == 50


def test_the_doctor_runs_sadtalkers_cli_and_ffmpeg_in_the_environment(checkout: Path) -> None:
    findings = environment_findings(SadTalkerSettings(home=checkout))
    assert [finding.level for finding in findings] == ["ok", "ok"], [finding.line() for finding in findings]
    assert findings[0].message.startswith("ffmpeg on SadTalker's PATH (imageio-ffmpeg's): ffmpeg version")
    assert f"{checkout / 'inference.py'} --help" in findings[1].message


@pytest.mark.timeout(7200)
def test_sadtalker_animates_a_photograph_with_the_released_weights(checkout: Path, tmp_path: Path) -> None:
    settings = SadTalkerSettings(home=checkout, device="cpu")
    missing = [finding.line() for finding in setup_findings(settings) if finding.level != "ok"]
    if missing:
        pytest.skip("the released SadTalker weights are not in the checkout: " + "; ".join(missing))
    request = AvatarRequest(speaker="ALEX", portrait=photograph(tmp_path / "astronaut.png"), audio=speech_like(tmp_path / "speech.wav", 4.0), duration_s=4.0, width=256, height=256)
    result = SadTalkerEngine(settings).run(request, tmp_path)
    assert result.frames == 100 and probe(result.video).streams[0].width == 256
