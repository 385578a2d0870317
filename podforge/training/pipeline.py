"""The work behind the ``train-music`` flow's tasks, one function per step (the tasks stay thin).

Label estimates and EnCodec codes are also cached per clip, by content, under ``$PODFORGE_HOME/cache``:
a clip is analysed and encoded once, whatever run or dataset it appears in. A training run lives in the
``train`` step's work folder, named by the step's key (the dataset, the base model's identity, the LoRA,
optimizer and checkpoint settings, the device), so re-running the same job, by a Prefect retry or by a new
flow run, finds its checkpoints and resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from os import environ
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from podforge.config import GpuSettings, PodforgeConfig, podforge_home
from podforge.engines.base import EngineSpec, MusicRequest
from podforge.engines.musicgen import ADAPTER_FILES, ENV_BY_BACKEND, model_location
from podforge.engines.registry import load_engine, resolve_engine
from podforge.errors import ConfigError, EngineError
from podforge.gpu import GpuInfo, GpuUsage, gpu_step
from podforge.io import copy_atomic, sha256_file, write_text_atomic
from podforge.planning import place
from podforge.runner import run_in_env, step_logger
from podforge.training.dataset import DatasetManifest, DatasetSpec
from podforge.training.prepare import Clip
from podforge.training.settings import TrainingSettings
from podforge.training.vram import VramNeed, vram_need

ENV = ENV_BY_BACKEND["transformers"]
"""LoRA training runs on the transformers backend (peft), in its environment."""
TRAIN_RUNNER = "train_runner.py"
TRAIN_JOB = "musicgen-train"
ProgressCallback = Callable[[dict[str, Any]], None]


def cache_dir(kind: str) -> Path:
    return podforge_home() / "cache" / kind


def licence_gate(spec: DatasetSpec, dataset_dir: Path, i_have_the_rights: bool) -> str | None:
    """Refuse ``copyrighted`` without the explicit flag; a warning (returned) for ``purchased``."""
    where = Path(dataset_dir) / "dataset.yaml"
    if spec.licence == "copyrighted" and not i_have_the_rights:
        raise ConfigError(
            "licence: copyrighted: training on copyrighted music may violate copyright; pass --i-have-the-rights only if you hold "
            "the rights or a licence to train on it",
            file=where,
            field="licence",
        )
    if spec.licence == "purchased":
        return (
            f"{where}: licence: purchased: buying music usually grants personal listening, not training; personal use may be a grey "
            "area and distributing the adapter or its output may not be allowed"
        )
    if spec.licence == "copyrighted":
        return f"{where}: licence: copyrighted: trained because --i-have-the-rights was given; this is recorded in the model card"
    return None


def base_identity(base: str) -> str:
    """What identifies the base model's weights: a folder's files by content, or the Hub id and cached revision."""
    location = Path(model_location(base))
    if location.is_dir():
        digest = hashlib.sha256()
        for path in sorted(p for p in location.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(location)}\n{sha256_file(path)}\n".encode())
        return digest.hexdigest()
    hub = Path(environ.get("HF_HUB_CACHE") or Path(environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    ref = hub / f"models--{base.replace('/', '--')}" / "refs" / "main"
    revision = ref.read_text(encoding="utf-8").strip() if ref.is_file() else "unknown-revision"
    return hashlib.sha256(f"{base}@{revision}".encode()).hexdigest()


def training_device(settings: TrainingSettings, gpus: list[GpuInfo]) -> str:
    """``cuda`` when asked for and a GPU exists; otherwise the CPU (a CUDA job falls back, with a warning)."""
    if settings.device == "cuda" and not gpus:
        step_logger().warning("no GPU found: the training runs on the CPU (slowly)")
        return "cpu"
    return settings.device


# --- labels ---------------------------------------------------------------------------------------------


def estimate_labels(clips: list[Clip], workdir: Path) -> dict[str, dict[str, Any]]:
    """Tempo, key and loudness per clip hash, from the training environment (cached per clip)."""
    cache = cache_dir("labels")
    found: dict[str, dict[str, Any]] = {}
    missing = []
    for clip in clips:
        cached = cache / f"{clip.sha256}.json"
        if cached.is_file():
            found[clip.sha256] = json.loads(cached.read_text(encoding="utf-8"))
        elif clip.sha256 not in {c.sha256 for c in missing}:
            missing.append(clip)
    if missing:
        response = run_in_env(ENV, "musicgen-label", {}, {"clips": [{"wav": str(c.wav)} for c in missing]}, workdir, runner_file=TRAIN_RUNNER)
        for clip, labels in zip(missing, response.result["labels"], strict=True):
            write_text_atomic(cache / f"{clip.sha256}.json", json.dumps(labels))
            found[clip.sha256] = labels
    return found


# --- encoding -------------------------------------------------------------------------------------------


class EncodedDataset(BaseModel):
    """Codes per clip hash (``.npy`` files in the content cache)."""

    base_identity: str
    codes: dict[str, Path]

    def __cache_content__(self) -> Any:
        return {"base": self.base_identity, "clips": sorted(self.codes)}


def encode(manifest: DatasetManifest, settings: TrainingSettings, identity: str, device: str, workdir: Path) -> EncodedDataset:
    """Each clip's EnCodec codes with the base model's codec, encoded once per (model identity, clip content)."""
    folder = cache_dir("encodec") / identity[:24]
    codes = {clip.sha256: folder / f"{clip.sha256}.npy" for clip in manifest.clips}
    todo = {clip.sha256: clip for clip in manifest.clips if not codes[clip.sha256].is_file()}
    if todo:
        runner_settings = {"model": str(model_location(settings.base)), "device": device, "fp16": settings.optim.fp16}
        request = {"clips": [{"wav": str(clip.wav), "codes": str(codes[sha])} for sha, clip in todo.items()]}
        run_in_env(ENV, "musicgen-encode", runner_settings, request, workdir, timeout_s=settings.timeout_s, runner_file=TRAIN_RUNNER)
    step_logger().info("encode: %d clips, %d encoded now, %d from the cache", len(codes), len(todo), len(codes) - len(todo))
    return EncodedDataset(base_identity=identity, codes=codes)


# --- training -------------------------------------------------------------------------------------------


class TrainResult(BaseModel):
    """What a training made. Its files are listed, so a cached result whose files were deleted is not reused."""

    run_dir: Path
    adapter_files: list[Path] = Field(description="the LoRA to publish: the best by validation loss, else the last")
    progress: Path = Field(description="the run's events, one JSON object a line")
    device: str
    steps: int
    total_steps: int
    steps_this_run: int
    resumed_from_step: int
    epochs_done: int
    stopped_early: bool
    history: list[dict[str, Any]]
    best_val: float | None
    train_seconds: float = Field(description="seconds spent training, over every run that contributed (resumes included)")
    wall_seconds: float = Field(description="this run of the task, model loading included")
    trainable_parameters: int
    vram: VramNeed
    gpu: GpuUsage = Field(default_factory=GpuUsage)
    settings: dict[str, Any] = Field(description="what was trained: base, device, lora, optim, checkpoints")

    @property
    def steps_per_second(self) -> float:
        return self.steps_this_run / self.train_seconds if self.train_seconds else 0.0


def train(
    manifest: DatasetManifest, encoded: EncodedDataset, settings: TrainingSettings, device: str, gpu: GpuSettings, run_dir: Path, on_progress: ProgressCallback | None = None
) -> TrainResult:
    """Train (or resume) the LoRA in ``run_dir``, following its progress file while it runs.

    On CUDA the job holds GPU slots for its estimated VRAM need, like any GPU step.
    """
    need = vram_need(settings)
    clips = [
        {"id": clip.id, "codes": str(encoded.codes[clip.sha256]), "description": clip.description(), "split": clip.split}
        for clip in manifest.clips
    ]
    request = {"clips": clips, "run_dir": str(run_dir), "settings": settings.runner_settings()}
    runner_settings = {"model": str(model_location(settings.base)), "device": device, "fp16": settings.optim.fp16}
    started = time.perf_counter()
    with follow_progress(run_dir / "progress.jsonl", on_progress), gpu_step(TRAIN_JOB, device, need.total_gb, gpu) as telemetry:
        response = run_in_env(ENV, TRAIN_JOB, runner_settings, request, run_dir, timeout_s=settings.timeout_s, runner_file=TRAIN_RUNNER)
    result = response.result
    return TrainResult(
        run_dir=run_dir,
        adapter_files=[Path(result["adapter"]) / name for name in ADAPTER_FILES],
        progress=run_dir / "progress.jsonl",
        device=response.device,
        steps=result["steps"],
        total_steps=result["total_steps"],
        steps_this_run=result["steps_this_run"],
        resumed_from_step=result["resumed_from_step"],
        epochs_done=result["epochs_done"],
        stopped_early=result["stopped_early"],
        history=result["history"],
        best_val=result["best_val"],
        train_seconds=result["train_seconds"],
        wall_seconds=round(time.perf_counter() - started, 3),
        trainable_parameters=result["trainable_parameters"],
        vram=need,
        gpu=telemetry.usage,
        settings={"device": device, **settings.model_dump(mode="json", include={"base", "lora", "optim", "checkpoints"})},
    )


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The events of a run's ``progress.jsonl`` (a line still being written is skipped)."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


@contextlib.contextmanager
def follow_progress(path: Path, on_progress: ProgressCallback | None, interval_s: float = 1.0) -> Iterator[None]:
    """Call ``on_progress`` with each new event of ``path`` while the block runs (and once more at its end)."""
    if on_progress is None:
        yield
        return
    import contextvars
    import threading

    stop = threading.Event()
    seen = len(read_progress(path))

    def deliver() -> None:
        nonlocal seen
        events = read_progress(path)
        for event in events[seen:]:
            on_progress(event)
        seen = len(events)

    def watch() -> None:
        while not stop.wait(interval_s):
            deliver()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(watch,), name="train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        deliver()


# --- publishing and samples ----------------------------------------------------------------------------


def replace_folder(staged: Path, final: Path) -> None:
    """Put ``staged`` where ``final`` is, replacing it with two renames (never a half-written folder)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{int(time.time() * 1000)}")
        final.rename(old)
        staged.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staged.rename(final)


def check_trainable(manifest: DatasetManifest) -> None:
    if not manifest.split("train"):
        raise EngineError(f"no usable clips in {manifest.source_dir}: every file was dropped (see the dataset report)", field="dataset")


def sample_engine(config: PodforgeConfig, adapter: Path, gpus: list[GpuInfo]) -> EngineSpec:
    """The ``musicgen`` engine on the trained base with the published adapter, placed on this machine."""
    settings = config.train_music
    asked = {**settings.samples.engine_settings, "model": settings.base, "device": settings.device, "adapter": str(adapter)}
    spec = resolve_engine(config, "musicgen", "music", settings=asked, field="engines.musicgen", settings_field="train_music.samples.engine_settings")
    return place(spec, config.gpu.model_copy(update={"cpu_fallback": True}), gpus)


def make_samples(engine: EngineSpec, prompts: list[str], duration_s: float, seed: int, gpu: GpuSettings, workdir: Path) -> list[Path]:
    """One bed per prompt from the adapter (seeds ``seed + 1``, ``seed + 2``…), as ``sample-N.wav`` in ``workdir``."""
    samples = []
    for number, prompt in enumerate(prompts, start=1):
        with gpu_step(engine.name, engine.resources.device, engine.resources.vram_gb, gpu):
            bed = load_engine(engine).run(MusicRequest(prompt=prompt, duration_s=duration_s, seed=seed + number), workdir / f"sample-{number}")
        samples.append(copy_atomic(bed.wav, workdir / f"sample-{number}.wav"))
        step_logger().info("sample %d: %r -> %s", number, prompt, samples[-1])
    return samples


def sample_prompts(manifest: DatasetManifest, count: int) -> list[str]:
    """The descriptions of the validation clips first, then the training clips' (distinct, in order)."""
    descriptions = [clip.description() for clip in manifest.split("validation") + manifest.split("train")]
    return list(dict.fromkeys(d for d in descriptions if d))[:count]
