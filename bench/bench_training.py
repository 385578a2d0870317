"""Benchmark: LoRA training of the tiny random MusicGen on the CPU, seconds and memory per optimizer step.

    .venv/bin/python bench/bench_training.py [--clips 6] [--clip-seconds 5] [--epochs 2]

Builds the ``musicgen`` environment and the tiny model (``external/musicgen/make_tiny_musicgen.py``) in a
temporary ``PODFORGE_HOME``, encodes a generated dataset once, then trains side by side in one run: the
default settings (batch 1, gradient checkpointing on), checkpointing off, and batch 2. Each variant is a
fresh training runner (``external/musicgen/train_runner.py``); the numbers come from its ``progress.jsonl``:
the median seconds of an optimizer step (the first step, which warms up, is left out), steps per second,
and the process's peak RSS (on CUDA the runner records ``torch.cuda.max_memory_allocated`` instead).
The tiny model says nothing about MusicGen-small's speed; it measures the loop's own overhead on this CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

VARIANTS = {
    "batch 1, checkpointing": {},
    "batch 1, no checkpointing": {"gradient_checkpointing": False},
    "batch 2, checkpointing": {"batch_size": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    os.environ["PODFORGE_HOME"] = tempfile.mkdtemp(prefix="podforge-bench-training-")
    try:
        measure(args)
    finally:
        shutil.rmtree(os.environ["PODFORGE_HOME"], ignore_errors=True)  # the environment alone is over 1 GB


def measure(args: argparse.Namespace) -> None:
    import soundfile

    from podforge import envs
    from podforge.config import load_config
    from podforge.runner import run_in_env
    from podforge.training.pipeline import read_progress
    from tiny_models import make_tiny_musicgen

    home = Path(os.environ["PODFORGE_HOME"])
    envs.build("musicgen", log=lambda line: None)
    model = make_tiny_musicgen(home / "tiny")
    rate = 32000
    clips = []
    for number in range(args.clips):
        t = np.arange(round(args.clip_seconds * rate)) / rate
        audio = 0.3 * np.sin(2 * np.pi * (220 + 55 * number) * t) + 0.05 * np.random.default_rng(number).standard_normal(len(t))
        wav = home / "clips" / f"clip{number}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(wav, audio.astype(np.float32), rate, subtype="PCM_16")
        clips.append({"wav": str(wav), "codes": str(home / "codes" / f"clip{number}.npy")})
    runner_settings = {"model": str(model), "device": "cpu"}
    run_in_env("musicgen", "musicgen-encode", runner_settings, {"clips": clips}, home / "encode", runner_file="train_runner.py")

    overrides = {"device": "cpu", "optim": {"epochs": args.epochs, "gradient_accumulation": 1}, "checkpoints": {"every_steps": 1000}}
    base = load_config(overrides={"train_music": overrides}).train_music
    rows = []
    for name, changes in VARIANTS.items():
        settings = {**base.runner_settings(), **changes}
        request = {
            "clips": [{"codes": c["codes"], "description": f"tone {i}", "split": "validation" if i == 0 else "train"} for i, c in enumerate(clips)],
            "run_dir": str(home / "runs" / name.replace(" ", "-").replace(",", "")),
            "settings": settings,
        }
        started = time.perf_counter()
        result = run_in_env("musicgen", "musicgen-train", runner_settings, request, home / "train", runner_file="train_runner.py").result
        wall = time.perf_counter() - started
        steps = [e for e in read_progress(Path(request["run_dir"]) / "progress.jsonl") if e["event"] == "step"]
        per_step = statistics.median(e["seconds"] for e in steps[1:]) if len(steps) > 1 else steps[0]["seconds"]
        rows.append((name, len(steps), per_step, 1 / per_step, max(e["memory_mb"] for e in steps), result["train_seconds"], wall, result["history"][-1]["train_loss"]))

    print(f"\nTiny MusicGen ({args.clips} clips of {args.clip_seconds:g} s, {args.epochs} epochs, LoRA r={base.lora.rank} on {base.lora.target_modules}), CPU:\n")
    print("| variant | steps | s per step (median) | steps/s | peak RSS MB | training s | runner wall s | last train loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, count, per_step, rate_, memory, train_s, wall, loss in rows:
        print(f"| {name} | {count} | {per_step:.3f} | {rate_:.2f} | {memory:.0f} | {train_s:.1f} | {wall:.1f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
