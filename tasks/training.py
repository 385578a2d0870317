"""The ``train-music`` flow's steps: ingest, prepare, label, dataset, encode, train, adapter, samples, report.

Each is thin: it calls :mod:`podforge.training` and returns what it made. Every step but ``ingest``,
``adapter`` and ``report`` is keyed by the content of what it declares, so a re-run after a failure (or a
kill) redoes only what is missing, and ``train`` finds its checkpoints in its work folder and resumes.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_progress_artifact, update_progress_artifact
from pydantic import BaseModel

from podforge.config import GpuSettings
from podforge.engines.base import EngineSpec
from podforge.io import write_text_atomic
from podforge.steps import current_step, step_task
from podforge.training import card, pipeline
from podforge.training.dataset import ClipLabels, DatasetManifest, DatasetSpec, build_manifest
from podforge.training.prepare import Clip, Prepared, SourceFile, find_audio, prepare
from podforge.training.settings import PrepareSettings, TrainingSettings


class Sources(BaseModel):
    files: list[SourceFile]


class LabelEstimates(BaseModel):
    """Tempo, key and loudness measured in the training environment, by clip hash."""

    by_clip: dict[str, dict[str, Any]]


class Samples(BaseModel):
    wavs: list[Path]


def artifact_key(name: str, what: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"train-{slug}-{what}"[:60]


@step_task("ingest", cached=False, retries=0)
def ingest(dataset_dir: str) -> Sources:
    """Every mp3, wav and flac file under the folder, with its content hash (always looked at again)."""
    return Sources(files=find_audio(Path(dataset_dir)))


@step_task("prepare", key=("sources", "settings"))
def prepare_clips(sources: Sources, settings: PrepareSettings) -> Prepared:
    prepared = prepare(sources.files, current_step().workdir / "clips", settings)
    for dropped in prepared.dropped:
        print(f"dropped {dropped.source} at {dropped.start_s:.1f} s ({dropped.duration_s:.1f} s): {dropped.reason}")
    return prepared


@step_task("label", key=("clips",))
def label_clips(clips: list[Clip]) -> LabelEstimates:
    """Tempo, key and loudness estimates for the clips whose labels do not give them."""
    return LabelEstimates(by_clip=pipeline.estimate_labels(clips, current_step().workdir) if clips else {})


@step_task("dataset", key=("name", "dataset_dir", "spec", "prepared", "user", "estimates", "validation_fraction"))
def dataset_manifest(
    name: str, dataset_dir: str, spec: DatasetSpec, prepared: Prepared, user: dict[str, ClipLabels | None], estimates: LabelEstimates, validation_fraction: float
) -> DatasetManifest:
    workdir = current_step().workdir
    manifest = build_manifest(name, Path(dataset_dir), spec, prepared, user, estimates.by_clip, validation_fraction, workdir)
    write_text_atomic(workdir / "dataset.json", manifest.model_dump_json(indent=2))
    pipeline.check_trainable(manifest)
    return manifest


@step_task("encode", key=("manifest", "base_identity"))
def encode_clips(manifest: DatasetManifest, settings: TrainingSettings, base_identity: str, device: str) -> pipeline.EncodedDataset:
    """``base_identity`` stands for ``settings.base`` in the key: the model's files by content."""
    return pipeline.encode(manifest, settings, base_identity, device, current_step().workdir)


@step_task("train", key=("manifest", "encoded", "settings.lora", "settings.optim", "settings.checkpoints", "device"))
def train_adapter(name: str, manifest: DatasetManifest, encoded: pipeline.EncodedDataset, settings: TrainingSettings, device: str, gpu: GpuSettings) -> pipeline.TrainResult:
    """Train the LoRA in this step's folder (resuming from its last checkpoint), with a live progress artifact and loss curve.

    ``settings.base`` and ``settings.prepare`` are in the key through ``encoded`` and ``manifest``.
    """
    board = TrainingBoard(name)
    result = pipeline.train(manifest, encoded, settings, device, gpu, current_step().workdir, on_progress=board.update)
    board.finish(result)
    return result


@step_task("adapter", cached=False, retries=1)
def publish_adapter(name: str, manifest: DatasetManifest, result: pipeline.TrainResult, price_as: str) -> card.AdapterInfo:
    """``adapters/<name>``: the LoRA and its model card (always written again: the folder may have changed)."""
    events = pipeline.read_progress(result.progress)
    return card.publish_adapter(name, manifest, result, events, card.training_cost(result, price_as))


@step_task("samples", key=("engine", "prompts", "duration_s", "seed"))
def make_samples(engine: EngineSpec, prompts: list[str], duration_s: float, seed: int, gpu: GpuSettings) -> Samples:
    """Beds from the published adapter; ``engine`` holds it as a file setting, so its content is in the key."""
    return Samples(wavs=pipeline.make_samples(engine, prompts, duration_s, seed, gpu, current_step().workdir))


@step_task("report", cached=False, retries=1)
def report(name: str, manifest: DatasetManifest, result: pipeline.TrainResult, info: card.AdapterInfo, samples: Samples, price_as: str, warning: str | None) -> str:
    """The markdown report (a Prefect artifact, and ``REPORT.md`` beside the adapter with its samples)."""
    published = card.add_samples(info, samples.wavs)
    markdown = card.training_report(name, manifest, result, info, published, card.training_cost(result, price_as), warning)
    write_text_atomic(info.path / "REPORT.md", markdown)
    create_markdown_artifact(markdown=markdown, key=artifact_key(name, "report"), description=f"Training report of the {name} adapter")
    return markdown


class TrainingBoard:
    """The progress artifact (steps done) and the loss-curve image artifact of one training task."""

    def __init__(self, name: str):
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.artifact_id = create_progress_artifact(progress=0.0, key=artifact_key(name, "progress"), description=f"Training {name}: optimizer steps done")

    def update(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("event") == "step" and event.get("total"):
            update_progress_artifact(artifact_id=self.artifact_id, progress=round(100 * event["step"] / event["total"], 1))
        elif event.get("event") == "epoch":
            self.history.append(event)
            self.publish_curve()
        elif event.get("event") == "resume":
            print(f"training {self.name}: resumed from the checkpoint at step {event['step']}")

    def publish_curve(self) -> None:
        png = card.loss_curve_png(self.events, self.history)
        create_image_artifact(image_url="data:image/png;base64," + base64.b64encode(png).decode("ascii"), key=artifact_key(self.name, "loss"), description=f"Loss curve of {self.name}")

    def finish(self, result: pipeline.TrainResult) -> None:
        update_progress_artifact(artifact_id=self.artifact_id, progress=100.0)
        self.history = result.history
        self.publish_curve()
