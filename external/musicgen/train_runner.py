"""The ``musicgen`` environment's training runner: dataset labels, EnCodec codes and LoRA training.

Run by ``podforge.runner.run_in_env(..., runner_file="train_runner.py")`` with one of three engines:

* ``musicgen-label``: request ``{"clips": [{"wav"}]}``; result ``{"labels": [{"bpm", "key", ...}]}``
  (librosa: beat tracking, chroma against key profiles, RMS).
* ``musicgen-encode``: settings ``{"model", "device", "fp16"}``; request ``{"clips": [{"wav", "codes"}]}``;
  each clip's EnCodec codes are written to its ``codes`` path (``.npy``, int16, ``(codebooks, frames)``).
* ``musicgen-train``: settings as for encode; request ``{"clips": [{"codes", "description", "split"}],
  "run_dir", "settings": {...}}`` (see ``training.Trainer``); the result has the steps, the loss history
  and where the adapter is. A run resumes from the newest checkpoint in ``run_dir/checkpoints``.

Training loads the model in ``handle`` (a training run is long; a warm worker must not keep a model that
was wrapped with LoRA), so ``load`` only imports the libraries and picks the device.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from podforge_runner import pick_device, serve  # noqa: E402

import training  # noqa: E402

JOBS = ("musicgen-label", "musicgen-encode", "musicgen-train")


class Job:
    def __init__(self, engine: str, settings: dict):
        if engine not in JOBS:
            raise ValueError(f"unknown training job {engine!r}; known: {', '.join(JOBS)}")
        self.engine = engine
        self.settings = settings
        self.device = "cpu" if engine == "musicgen-label" else pick_device(settings, torch.cuda.is_available(), engine)
        self.fp16 = self.device == "cuda" and bool(settings.get("fp16", True))
        self.model_name = str(settings.get("model", "facebook/musicgen-small"))


def load(engine: str, settings: dict) -> Job:
    return Job(engine, settings)


def handle(job: Job, request: dict, workdir: Path) -> tuple[dict, str]:
    if job.engine == "musicgen-label":
        labels = []
        for clip in request["clips"]:
            labels.append(training.estimate_labels(clip["wav"]))
            print(f"label: {Path(clip['wav']).name}: {labels[-1]}", flush=True)
        return {"labels": labels}, "cpu"
    torch.manual_seed(int(request.get("settings", {}).get("seed", 0)))
    model, processor = training.load_musicgen(job.model_name, job.device, job.fp16)
    if job.engine == "musicgen-encode":
        model.audio_encoder.float()  # codes from the codec at full precision, whatever the decoder runs in
        return {"clips": training.encode_clips(model, job.device, request["clips"])}, job.device
    trainer = training.Trainer(model, processor, job.device, request)
    return trainer.train(), job.device


if __name__ == "__main__":
    serve(load, handle, report_versions=("torch", "transformers", "peft", "librosa"))
