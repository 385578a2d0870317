"""The ``train-music`` flow: a folder of music becomes a LoRA adapter for MusicGen, a show's own sound.

ingest (mp3/wav/flac, recursively) → prepare (32 kHz mono clips of 5-30 s cut at quiet points; silent,
clipped and too-short clips dropped with reasons) → label (user JSON, dataset.yaml, librosa estimates)
→ dataset manifest (hashes, durations, labels, split) → encode (EnCodec codes, cached by content) →
train (LoRA with peft in the ``musicgen`` environment; resumable checkpoints, validation and early
stopping; GPU slots held like any GPU step) → adapter (published with its model card) → samples → report.

The settings are the config's ``train_music:`` section (``configs/default.yaml``; a ``--config`` file or
``overrides`` over it). The UI shows a progress artifact, the loss curve (an image artifact, updated each
epoch) and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

from podforge.config import deep_merge, load_config
from podforge.gpu import ensure_gpu_limits, list_gpus
from podforge.training import card, pipeline
from podforge.training.dataset import check_style_name, estimates_needed, read_dataset_spec, user_labels_by_source
from podforge.workers import with_engine_workers
from tasks.training import Samples, dataset_manifest, encode_clips, ingest, label_clips, make_samples, prepare_clips, publish_adapter, report, train_adapter


class TrainingSummary(BaseModel):
    adapter: card.AdapterInfo
    training: pipeline.TrainResult
    samples: list[Path]
    report: str
    warning: str | None = None


@flow(name="train-music", log_prints=True)
@with_engine_workers  # one warm worker per engine for this run, stopped when it ends
def train_music(
    dataset_dir: str, name: str, base: str | None = None, config: list[str] | None = None, overrides: dict[str, Any] | None = None, i_have_the_rights: bool = False
) -> TrainingSummary:
    """Fine-tune MusicGen with a LoRA on the music in ``dataset_dir``; publish it as adapter ``name``."""
    logger = get_run_logger()
    check_style_name(name)
    cfg = load_config(config or [], deep_merge(overrides or {}, {"train_music": {"base": base}} if base else {}))
    settings = cfg.train_music
    spec = read_dataset_spec(Path(dataset_dir))
    warning = pipeline.licence_gate(spec, Path(dataset_dir), i_have_the_rights)
    if warning:
        logger.warning(warning)
    gpus = list_gpus()
    ensure_gpu_limits(gpus)  # the training job holds GPU slots like any GPU step
    device = pipeline.training_device(settings, gpus)
    price_as = settings.price_as or cfg.gpu.price_as

    sources = ingest(dataset_dir=dataset_dir)
    prepared = prepare_clips(sources=sources, settings=settings.prepare)
    user = user_labels_by_source(sources.files)
    needs = estimates_needed(spec, user)
    estimates = label_clips(clips=[clip for clip in prepared.clips if needs[clip.source]])
    manifest = dataset_manifest(
        name=name, dataset_dir=dataset_dir, spec=spec, prepared=prepared, user=user, estimates=estimates, validation_fraction=settings.prepare.validation_fraction
    )
    encoded = encode_clips(manifest=manifest, settings=settings, base_identity=pipeline.base_identity(settings.base), device=device)
    result = train_adapter(name=name, manifest=manifest, encoded=encoded, settings=settings, device=device, gpu=cfg.gpu)
    info = publish_adapter(name=name, manifest=manifest, result=result, price_as=price_as)
    prompts = (settings.samples.prompts or pipeline.sample_prompts(manifest, settings.samples.count))[: settings.samples.count]
    samples = (
        make_samples(engine=pipeline.sample_engine(cfg, info.lora, gpus), prompts=prompts, duration_s=settings.samples.duration_s, seed=settings.samples.seed, gpu=cfg.gpu)
        if prompts
        else Samples(wavs=[])
    )
    markdown = report(name=name, manifest=manifest, result=result, info=info, samples=samples, price_as=price_as, warning=warning)
    return TrainingSummary(adapter=info, training=result, samples=samples.wavs, report=markdown, warning=warning)
