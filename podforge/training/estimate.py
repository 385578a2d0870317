"""``podforge estimate --train DATASET_DIR``: hours of audio in a dataset, the job's steps, and the cost."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel

from podforge.cost import TrainingEstimate, estimate_training
from podforge.errors import PodforgeError
from podforge.media.ffmpeg import probe
from podforge.training.prepare import AUDIO_SUFFIXES
from podforge.training.settings import TrainingSettings


class DatasetSize(BaseModel):
    files: int
    hours: float
    clips: int = 0
    steps: int = 0


def dataset_size(dataset_dir: Path, settings: TrainingSettings) -> DatasetSize:
    """Files and hours of audio (read from the files' headers), and the clips and optimizer steps they make.

    Clips are counted as the prepare step cuts them (at most ``max_clip_s`` each, before drops); the steps
    are ``epochs x ceil(ceil(training clips / batch) / accumulation)``.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise PodforgeError("dataset folder not found", file=root, field="--train")
    durations = [probe(p).duration_s for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    if not durations:
        raise PodforgeError(f"no {', '.join(AUDIO_SUFFIXES)} files in it (searched recursively)", file=root, field="--train")
    prepare, optim = settings.prepare, settings.optim
    clips = sum(max(1, math.ceil(d / prepare.max_clip_s)) for d in durations if d >= prepare.min_clip_s)
    held_out = max(1, round(clips * prepare.validation_fraction)) if clips > 1 and prepare.validation_fraction > 0 else 0
    batches = math.ceil((clips - held_out) / optim.batch_size)
    steps = optim.epochs * math.ceil(batches / optim.gradient_accumulation)
    return DatasetSize(files=len(durations), hours=sum(durations) / 3600, clips=clips, steps=steps)


def estimate_dataset(dataset_dir: Path, gpu: str, settings: TrainingSettings, steps_per_second: float | None = None) -> tuple[DatasetSize, TrainingEstimate]:
    size = dataset_size(dataset_dir, settings)
    return size, estimate_training(size.hours, gpu, steps=size.steps, steps_per_second=steps_per_second)
