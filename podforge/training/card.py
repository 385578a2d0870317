"""What a finished training leaves behind: the adapter folder, its model card, the loss curve, the report.

``$PODFORGE_HOME/adapters/<style>/`` holds ``lora/`` (peft's ``adapter_config.json`` and
``adapter_model.safetensors``, nothing else: the folder an episode's music step hashes), ``README.md`` (the
model card: base model, dataset hash, licence declaration, settings, loss curve), ``training.json`` (the
same as data), ``dataset.json`` (the dataset manifest), ``loss.png``, and once the report is written,
``REPORT.md`` and ``samples/``. :func:`list_adapters` reads them back for ``podforge adapters list``.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from pydantic import BaseModel, Field

from podforge.cost import price_gpu_seconds
from podforge.engines.musicgen import LORA_FOLDER, adapter_sha256, adapters_dir
from podforge.io import copy_atomic, write_bytes_atomic, write_text_atomic
from podforge.training.dataset import DatasetManifest
from podforge.training.pipeline import TrainResult, replace_folder

LICENCE_TEXT = {
    "own": "your own music: no restrictions from the training data",
    "cc": "Creative Commons / royalty-free music: check the specific licence (attribution, non-commercial, share-alike)",
    "purchased": "purchased music: personal use may be a grey area; distributing this adapter or its output may not be allowed",
    "copyrighted": "copyrighted music, trained with --i-have-the-rights: the user declared holding the rights to train on it",
}


class AdapterInfo(BaseModel):
    name: str
    path: Path = Field(description="the adapter's folder: the model card, and the LoRA in `lora/`")
    sha256: str = Field(description="of the LoRA's configuration and weights")
    base: str
    dataset_sha256: str
    licence: str
    clips: int
    hours: float
    steps: int
    best_val: float | None
    created: str

    @property
    def lora(self) -> Path:
        return self.path / LORA_FOLDER


class TrainingCost(BaseModel):
    """The GPU-seconds a training used, priced on a ``configs/pricing.yaml`` GPU."""

    price_as: str
    usd: float


def training_cost(result: TrainResult, price_as: str) -> TrainingCost:
    seconds = result.gpu.gpu_seconds
    return TrainingCost(price_as=price_as, usd=round(price_gpu_seconds(seconds, price_as), 6) if seconds else 0.0)


def loss_curve_png(events: list[dict[str, Any]], history: list[dict[str, Any]], width: int = 640, height: int = 320) -> bytes:
    """Training loss per step (blue line) and validation loss per epoch (orange dots), as a PNG."""
    steps = [(e["step"], e["loss"]) for e in events if e.get("event") == "step"]
    steps = list(dict(steps).items())  # a resumed run repeats no step, but keep the last value of each
    val = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 56, width - 16, 16, height - 36
    draw.rectangle([left, top, right, bottom], outline="#888888")
    values = [v for _, v in steps + val]
    if not values:
        draw.text((left + 8, top + 8), "no steps yet", fill="black")
    else:
        low, high = min(values), max(values)
        high = high if high > low else low + 1e-6
        last = max(s for s, _ in steps + val) or 1

        def point(step: float, value: float) -> tuple[float, float]:
            return left + (right - left) * step / last, bottom - (bottom - top) * (value - low) / (high - low)

        if len(steps) > 1:
            draw.line([point(s, v) for s, v in steps], fill="#1f77b4", width=2)
        for s, v in val:
            x, y = point(s, v)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill="#ff7f0e")
        draw.text((4, top), f"{high:.3f}", fill="black")
        draw.text((4, bottom - 10), f"{low:.3f}", fill="black")
        draw.text((right - 60, bottom + 6), f"step {last}", fill="black")
    draw.text((left, bottom + 18), "training loss per step (blue), validation loss per epoch (orange)", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def model_card(name: str, manifest: DatasetManifest, result: TrainResult, sha256: str, cost: TrainingCost) -> str:
    settings = result.settings
    lora, optim = settings["lora"], settings["optim"]
    lines = [
        f"# LoRA adapter `{name}` for MusicGen",
        "",
        f"* **Base model:** `{settings['base']}` (MusicGen weights are CC-BY-NC 4.0: non-commercial use only)",
        f"* **Adapter sha256:** `{sha256}`",
        f"* **Dataset:** `{manifest.dataset_sha256}` — {len(manifest.clips)} clips ({manifest.hours * 60:.1f} min) from "
        f"{len(manifest.sources)} files in `{manifest.source_dir}`; {len(manifest.split('validation'))} held out for validation",
        f"* **Licence declaration (dataset.yaml):** `{manifest.licence}` — {LICENCE_TEXT[manifest.licence]}" + (f" ({manifest.licence_note})" if manifest.licence_note else ""),
        f"* **LoRA:** rank {lora['rank']}, alpha {lora['alpha']:g}, dropout {lora['dropout']:g}, on {', '.join(lora['target_modules'])} of the decoder "
        f"({result.trainable_parameters:,} trainable parameters)",
        f"* **Training:** {result.steps} of {result.total_steps} optimizer steps, {result.epochs_done} epochs"
        + (" (stopped early: the validation loss stopped improving)" if result.stopped_early else "")
        + f"; batch {optim['batch_size']} x {optim['gradient_accumulation']} accumulated, learning rate {optim['learning_rate']:g} "
        f"({optim['lr_schedule']}, {optim['warmup_steps']} warm-up steps), fp16 {optim['fp16'] and result.device == 'cuda'}, "
        f"gradient checkpointing {optim['gradient_checkpointing']}, seed {optim['seed']}",
        f"* **Device:** {result.device}; {result.train_seconds:.1f} s training, {result.gpu.gpu_seconds:.1f} GPU-seconds "
        f"(${cost.usd:.4f} priced as `{cost.price_as}`); estimated VRAM need {result.vram.total_gb:.1f} GB",
        "",
        "## Loss",
        "",
        "![loss curve](loss.png)",
        "",
        "| epoch | step | training loss | validation loss |",
        "|---:|---:|---:|---:|",
    ]
    for row in result.history:
        val = f"{row['val_loss']:.4f}" if row.get("val_loss") is not None else "—"
        lines.append(f"| {row['epoch']} | {row['step']} | {row['train_loss']:.4f} | {val} |")
    lines += [
        "",
        "## Use",
        "",
        f"`podforge run EPISODE.md --music musicgen:{name}`, in the episode's front matter `music: {{engine: musicgen, adapter: {name}}}`, "
        f"or in a config `use: {{music: \"musicgen:{name}\"}}`.",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(settings, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def publish_adapter(name: str, manifest: DatasetManifest, result: TrainResult, events: list[dict[str, Any]], cost: TrainingCost) -> AdapterInfo:
    """Copy the trained LoRA into ``adapters/<name>/lora`` with the card, data and loss curve beside it (one rename)."""
    root = adapters_dir()
    root.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    (staged / LORA_FOLDER).mkdir()
    for file in result.adapter_files:
        shutil.copyfile(file, staged / LORA_FOLDER / file.name)
    sha256 = adapter_sha256(staged / LORA_FOLDER)
    write_bytes_atomic(staged / "loss.png", loss_curve_png(events, result.history))
    write_text_atomic(staged / "dataset.json", manifest.model_dump_json(indent=2))
    info = AdapterInfo(
        name=name,
        path=root / name,
        sha256=sha256,
        base=result.settings["base"],
        dataset_sha256=manifest.dataset_sha256,
        licence=manifest.licence,
        clips=len(manifest.clips),
        hours=manifest.hours,
        steps=result.steps,
        best_val=result.best_val,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    record = {"adapter": info.model_dump(mode="json"), "training": result.model_dump(mode="json"), "cost": cost.model_dump()}
    write_text_atomic(staged / "training.json", json.dumps(record, indent=2))
    write_text_atomic(staged / "README.md", model_card(name, manifest, result, sha256, cost))
    replace_folder(staged, root / name)
    return info


def add_samples(info: AdapterInfo, samples: list[Path]) -> list[Path]:
    """The samples copied into the adapter's ``samples/``; their new paths."""
    return [copy_atomic(sample, info.path / "samples" / sample.name) for sample in samples]


def list_adapters() -> list[AdapterInfo]:
    """Every published adapter, by name."""
    root = adapters_dir()
    found = []
    for folder in sorted(root.glob("*")) if root.is_dir() else []:
        record = folder / "training.json"
        if folder.name.startswith(".") or not record.is_file():
            continue
        data = json.loads(record.read_text(encoding="utf-8"))["adapter"]
        found.append(AdapterInfo.model_validate({**data, "path": folder, "sha256": adapter_sha256(folder / LORA_FOLDER)}))
    return found


def training_report(name: str, manifest: DatasetManifest, result: TrainResult, info: AdapterInfo, samples: list[Path], cost: TrainingCost, warning: str | None) -> str:
    """The run's markdown report: dataset table, what was dropped and why, training, cost, samples."""
    lines = [f"# Training `{name}`", ""]
    if warning:
        lines += [f"> **Licence:** {warning}", ""]
    lines += [
        f"**Dataset** `{manifest.dataset_sha256[:16]}…`: {len(manifest.clips)} clips, {manifest.hours * 60:.1f} min, "
        f"licence `{manifest.licence}`; {len(manifest.split('train'))} for training, {len(manifest.split('validation'))} for validation; "
        f"{len(manifest.dropped)} dropped.",
        "",
        "| clip | source | start s | length s | split | description | bpm | key | labels from |",
        "|---|---|---:|---:|---|---|---:|---|---|",
    ]
    for clip in manifest.clips:
        labels = clip.labels
        origin = ", ".join(f"{field}: {source}" for field, source in clip.label_sources.items())
        bpm = f"{labels.bpm:.1f}" if labels.bpm else ""
        lines.append(f"| {clip.id} | {clip.source} | {clip.start_s:.1f} | {clip.duration_s:.1f} | {clip.split} | {labels.description} | {bpm} | {labels.key or ''} | {origin} |")
    if manifest.dropped:
        lines += ["", "| dropped from | start s | length s | reason |", "|---|---:|---:|---|"]
        lines += [f"| {d.source} | {d.start_s:.1f} | {d.duration_s:.1f} | {d.reason} |" for d in manifest.dropped]
    resumed = f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else ""
    lines += [
        "",
        f"**Training** on {result.device}: {result.steps}/{result.total_steps} steps, {result.epochs_done} epochs{resumed}"
        + (", stopped early" if result.stopped_early else "")
        + f"; {result.train_seconds:.1f} s of training ({result.steps_per_second:.2f} steps/s in this run).",
        f"**GPU:** {result.gpu.gpu_seconds:.1f} GPU-seconds, peak {result.gpu.peak_vram_mb:.0f} MB (estimated need {result.vram.total_gb:.1f} GB); "
        f"${cost.usd:.4f} priced as `{cost.price_as}`.",
        "",
        "| epoch | step | training loss | validation loss |",
        "|---:|---:|---:|---:|",
    ]
    for row in result.history:
        val = f"{row['val_loss']:.4f}" if row.get("val_loss") is not None else "—"
        lines.append(f"| {row['epoch']} | {row['step']} | {row['train_loss']:.4f} | {val} |")
    lines += ["", f"**Adapter** `{name}` sha256 `{info.sha256[:16]}…` in `{info.path}` (model card: `{info.path / 'README.md'}`).", ""]
    if samples:
        lines += ["**Samples** from the adapter:", ""] + [f"* `{path}`" for path in samples] + [""]
    return "\n".join(lines)
