"""The ``train-music`` flow's steps: prepare, label, manifest, encode, train, publish, samples, report.

Each is thin: it calls :mod:`podforge.training` and records the artifact. Everything but ``ingest`` and
``publish`` is cached by content, so a re-run after a failure (or a kill) redoes only what is missing,
and training itself resumes from its last checkpoint.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_progress_artifact, update_progress_artifact

from podforge.config import GpuSettings, load_config
from podforge.engines.base import MusicRequest
from podforge.engines.musicgen import pin_adapter
from podforge.engines.registry import load_engine, resolve_engine
from podforge.gpu import gpu_step, list_gpus, resolve_device
from podforge.io import copy_atomic
from podforge.steps import StepContext, step_task
from podforge.training import card, pipeline
from podforge.training.dataset import DatasetManifest, build_manifest
from podforge.training.prepare import Prepared, SourceFile, find_audio, prepare
from podforge.training.settings import ClipLabels, DatasetSpec, PrepareSettings, TrainingSettings


def artifact_key(name: str, what: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"train-{slug}-{what}"[:60]


@step_task("ingest", cached=False)
def ingest(dataset_dir: str) -> list[SourceFile]:
    return find_audio(Path(dataset_dir))


@step_task("prepare")
def prepare_clips(sources: list[SourceFile], settings: PrepareSettings) -> Prepared:
    context = StepContext("prepare", "podforge", {"sources": sources, "settings": settings})
    prepared = prepare(sources, context.workdir / "clips", settings)
    for dropped in prepared.dropped:
        print(f"dropped {dropped.source} at {dropped.start_s:.1f} s ({dropped.duration_s:.1f} s): {dropped.reason}")
    return prepared


@step_task("label")
def label_clips(prepared: Prepared, needs_estimate: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Tempo, key and loudness estimates for the clips of the sources that need them (by clip hash)."""
    todo = [clip for clip in prepared.clips if needs_estimate.get(clip.source)]
    context = StepContext("label", "musicgen-label", {"clips": [clip.sha256 for clip in todo]})
    return pipeline.estimate_labels(todo, context.workdir) if todo else {}


@step_task("dataset")
def dataset_manifest(
    name: str, dataset_dir: str, spec: DatasetSpec, prepared: Prepared, user: dict[str, ClipLabels | None], estimates: dict[str, dict[str, Any]], validation_fraction: float
) -> DatasetManifest:
    key_inputs = {"spec": spec, "prepared": prepared, "user": user, "estimates": estimates, "fraction": validation_fraction, "name": name}
    context = StepContext("dataset", "podforge", key_inputs)
    manifest = build_manifest(name, Path(dataset_dir), spec, prepared, user, estimates, validation_fraction, context.workdir)
    (context.workdir / "dataset.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    pipeline.check_trainable(manifest)
    return manifest


@step_task("encode")
def encode_clips(manifest: DatasetManifest, settings: TrainingSettings, device: str) -> pipeline.EncodedDataset:
    context = StepContext("encode", "musicgen-encode", {"clips": [clip.sha256 for clip in manifest.clips], "base": settings.base})
    return pipeline.encode(manifest, settings, device, context.workdir)


@step_task("train")
def train_adapter(name: str, manifest: DatasetManifest, encoded: pipeline.EncodedDataset, settings: TrainingSettings, gpu: GpuSettings) -> pipeline.TrainResult:
    """Train the LoRA (resuming from the run's last checkpoint), with a live progress artifact and loss curve."""
    board = TrainingBoard(name)
    result = pipeline.train(name, manifest, encoded, settings, gpu, on_progress=board.update)
    board.finish(result)
    return result


@step_task("publish", cached=False)
def publish(name: str, manifest: DatasetManifest, result: pipeline.TrainResult) -> card.AdapterInfo:
    return card.publish_adapter(name, manifest, result, pipeline.read_progress(result.run_dir / "progress.jsonl"))


@step_task("samples")
def make_samples(info: card.AdapterInfo, prompts: list[str], duration_s: float, seed: int, engine_settings: dict[str, Any], gpu: GpuSettings) -> list[Path]:
    """Beds from the published adapter (``info`` names it and its hash), copied into its ``samples/``."""
    settings = {**engine_settings, "model": info.base, "adapter": info.name}
    spec = pin_adapter(resolve_device(resolve_engine(load_config(), "musicgen", "music", settings=settings), gpu.model_copy(update={"cpu_fallback": True}), list_gpus()))
    context = StepContext("samples", "musicgen", {"adapter": info.sha256, "prompts": prompts, "duration_s": duration_s, "seed": seed, "spec": spec})
    samples = []
    for number, prompt in enumerate(prompts, start=1):
        with gpu_step(spec, gpu):
            bed = load_engine(spec).run(MusicRequest(prompt=prompt, duration_s=duration_s, seed=seed + number), context.workdir / f"sample-{number}")
        samples.append(copy_atomic(bed.wav, info.path / "samples" / f"sample-{number}.wav"))
        print(f"sample {number}: {prompt!r} -> {samples[-1]}")
    return samples


@step_task("report", cached=False)
def report(name: str, manifest: DatasetManifest, result: pipeline.TrainResult, info: card.AdapterInfo, samples: list[Path], warning: str | None) -> str:
    markdown = card.training_report(name, manifest, result, info, samples, warning)
    (info.path / "REPORT.md").write_text(markdown, encoding="utf-8")
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

