"""The ``train-music`` flow: a folder of music becomes a LoRA adapter for MusicGen, a show's own sound.

ingest (mp3/wav/flac, recursively) → prepare (32 kHz mono clips of 5-30 s cut at quiet points; silent,
clipped and too-short clips dropped with reasons) → label (user JSON, dataset.yaml, librosa estimates)
→ dataset manifest (hashes, durations, labels, split) → encode (EnCodec codes, cached by content) →
train (LoRA with peft in the ``musicgen`` environment; resumable checkpoints, validation and early
stopping; GPU slots held like any GPU step) → publish (adapter + model card) → samples → report.

The UI shows a progress artifact, the loss curve (an image artifact, updated each epoch) and the report.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from podforge.gpu import ensure_gpu_limits, list_gpus
from podforge.training import card, pipeline
from podforge.training.dataset import estimates_needed, user_labels_by_source
from podforge.training.settings import check_style_name, load_gpu_settings, load_training_settings, read_dataset_spec
from tasks.training import dataset_manifest, encode_clips, ingest, label_clips, make_samples, prepare_clips, publish, report, train_adapter


class TrainingSummary(BaseModel):
    adapter: card.AdapterInfo
    training: pipeline.TrainResult
    samples: list[Path]
    report: str
    warning: str | None = None


@flow(name="train-music", log_prints=True)
def train_music(dataset_dir: str, name: str, base: str | None = None, config: list[str] | None = None, i_have_the_rights: bool = False) -> TrainingSummary:
    """Fine-tune MusicGen with a LoRA on the music in ``dataset_dir``; publish it as adapter ``name``."""
    logger = get_run_logger()
    check_style_name(name)
    config_files = [Path(p) for p in config or []]
    settings = load_training_settings(config_files, {"base": base} if base else None)
    gpu = load_gpu_settings(config_files)
    spec = read_dataset_spec(Path(dataset_dir))
    warning = pipeline.licence_gate(spec, Path(dataset_dir), i_have_the_rights)
    if warning:
        logger.warning(warning)
    ensure_gpu_limits(list_gpus())  # the training job holds GPU slots like any GPU step
    train_spec = pipeline.training_spec(settings, gpu)

    sources = ingest(dataset_dir)
    prepared = prepare_clips(sources, settings.prepare)
    user = user_labels_by_source(sources)
    estimates = label_clips(prepared, estimates_needed(spec, user))
    manifest = dataset_manifest(name, dataset_dir, spec, prepared, user, estimates, settings.prepare.validation_fraction)
    encoded = encode_clips(manifest, settings, train_spec.resources.device)
    result = train_adapter(name, manifest, encoded, settings, gpu)
    info = publish(name, manifest, result)
    prompts = settings.samples.prompts or sample_prompts(manifest, settings.samples.count)
    samples = make_samples(info, prompts[: settings.samples.count], settings.samples.duration_s, settings.samples.seed, settings.samples.engine_settings, gpu)
    markdown = report(name, manifest, result, info, samples, warning)
    return TrainingSummary(adapter=info, training=result, samples=samples, report=markdown, warning=warning)


def sample_prompts(manifest, count: int) -> list[str]:
    """The descriptions of the validation clips first, then the training clips' (distinct, in order)."""
    descriptions = [clip.description() for clip in manifest.split("validation") + manifest.split("train")]
    return list(dict.fromkeys(d for d in descriptions if d))[:count]
