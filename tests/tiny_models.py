"""Tiny, randomly initialised models for the GPU engines' tests, built inside their environments.

No weights can be downloaded here, so the tests make their own: the scripts under ``external/<env>/``
build a model with the libraries' public classes and save it the way released models are saved; the
engines then load it with the same public loading calls they use for real weights.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from podforge import envs
from podforge.runner import runner_environment


def run_env_script(env: str, script: str, out_dir: Path) -> None:
    """Run ``external/<env>/<script> OUT_DIR`` with the environment's Python (the env must be built)."""
    python = envs.python_for(env)
    completed = subprocess.run(
        [str(python), str(envs.EXTERNAL_DIR / env / script), str(out_dir)],
        env=runner_environment(python, None),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{script} failed in the {env} environment:\n{completed.stdout}\n{completed.stderr}")


def make_tiny_vits(out_dir: Path) -> tuple[Path, Path]:
    """A 16 kHz VITS voice: ``(model.pth, config.json)``, loadable with ``TTS(model_path=, config_path=)``."""
    run_env_script("coqui", "make_tiny_vits.py", out_dir)
    return out_dir / "model.pth", out_dir / "config.json"


def make_tiny_musicgen(out_dir: Path) -> Path:
    """A folder saved with ``save_pretrained``: MusicGen at 32 kHz, 50 frames/s, 4 codebooks."""
    run_env_script("musicgen", "make_tiny_musicgen.py", out_dir)
    return out_dir


def make_tiny_audiocraft_musicgen(out_dir: Path) -> Path:
    """A folder audiocraft's ``MusicGen.get_pretrained`` loads: ``state_dict.bin`` and ``compression_state_dict.bin``."""
    run_env_script("audiocraft", "make_tiny_musicgen.py", out_dir)
    return out_dir
