"""MusicGen music beds (transformers), run in the isolated ``musicgen`` environment.

Settings (``engines.musicgen.settings``): ``model`` (``facebook/musicgen-small|medium|large|melody`` from
the Hugging Face cache, or a folder saved with ``save_pretrained``; a relative folder is read under
``$PODFORGE_HOME/models``), ``loop_s`` (the bed's length when the request names none: 30),
``guidance_scale``, ``temperature``, ``top_k``, ``window_s``, ``overlap_s``, ``crossfade_s``, ``device``,
``fp16``, ``vram_gb`` and ``adapter`` (a LoRA made by ``podforge train-music --name STYLE``: the style's
name, read from ``$PODFORGE_HOME/adapters/STYLE``; see :func:`pin_adapter`); ``external/musicgen/runner.py``
says how beds longer than one window are made.

The bed loops without a click: the runner generates ``crossfade_s`` (1 s) more than asked, and that extra
tail is crossfaded (equal power) over the bed's start, so when the bed repeats its last sample is followed
by what the model generated after it. The bed keeps the model's rate (32 kHz mono); the mix resamples it.

The released MusicGen weights are licensed CC-BY-NC 4.0 (non-commercial use only); the code that runs
them (transformers) is Apache-2.0.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
from pydantic import Field, field_validator, model_validator

from podforge.config import models_dir, podforge_home
from podforge.engines.base import Engine, EngineSpec, MusicRequest, MusicResult, Resources
from podforge.errors import EngineError
from podforge.io import atomic_path, sha256_file
from podforge.runner import run_in_env

ENV = "musicgen"
DEFAULT_MODEL = "facebook/musicgen-small"
DEFAULT_LOOP_S = 30.0
DEFAULT_CROSSFADE_S = 1.0
VRAM_GB_BY_SIZE = {"small": 3.0, "medium": 8.0, "melody": 8.0, "large": 16.0}
"""Peak VRAM of fp16 inference, rounded up; a local folder is assumed small unless ``vram_gb`` says otherwise."""


def model_location(model: str | Path) -> str | Path:
    """A Hub id (``facebook/musicgen-small``) unchanged, or a local folder as an absolute path.

    A value is a folder when it is a path, absolute, starts with ``~`` or ``.``, or exists under the models dir.
    """
    if isinstance(model, Path):
        return model.expanduser().resolve()
    path = Path(model).expanduser()
    if path.is_absolute() or model.startswith((".", "~")):
        return path.resolve()
    under_models = models_dir() / model
    return under_models if under_models.exists() else model


class MusicGenSettings(EngineSettings):
    model: Path | str = Field(default=DEFAULT_MODEL, description="a Hub id from the local cache, or a folder saved with save_pretrained")
    loop_s: float = Field(default=DEFAULT_LOOP_S, gt=0, description="bed length when none is asked for")
    guidance_scale: float = Field(default=3.0, ge=0)
    temperature: float = Field(default=1.0, gt=0)
    top_k: int = Field(default=250, ge=1)
    window_s: float = Field(default=30.0, gt=0, description="generated at once; longer beds are continued")
    overlap_s: float = Field(default=5.0, ge=0, description="audio carried into the next window as its prompt")
    crossfade_s: float = Field(default=DEFAULT_CROSSFADE_S, ge=0, description="the loop seam")
    device: Literal["cuda", "cpu"] = "cuda"
    fp16: bool = Field(default=True, description="CUDA only")
    vram_gb: float | None = Field(default=None, ge=0, description="default: by model size")
    timeout_s: float = Field(default=3600.0, gt=0)

    @field_validator("model", mode="before")
    @classmethod
    def _folder_or_hub_id(cls, value: str | Path) -> str | Path:
        return model_location(value)

    @model_validator(mode="after")
    def _saved_model_folder(self) -> MusicGenSettings:
        if isinstance(self.model, Path) and not (self.model / "config.json").is_file():
            raise ValueError(f"{self.model} is not a saved MusicGen model (no config.json there)")
        return self


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""The files of a peft LoRA that change what it generates (hashed for the cache key)."""


def adapters_dir() -> Path:
    """Where ``podforge train-music`` publishes adapters, one folder per style name."""
    return podforge_home() / "adapters"


def adapter_sha256(folder: Path) -> str:
    """sha256 over the adapter's configuration and weights (names and contents)."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(f"{name}\n{sha256_file(folder / name)}\n".encode())
    return digest.hexdigest()


def find_adapter(name: str, field: str = "engines.musicgen.settings.adapter") -> Path:
    """The folder of adapter ``name`` (a style name under :func:`adapters_dir`, or a folder path)."""
    folder = Path(name).expanduser() if ("/" in name or name.startswith(".")) else adapters_dir() / name
    if not all((folder / file).is_file() for file in ADAPTER_FILES):
        known = sorted(p.name for p in adapters_dir().glob("*") if (p / ADAPTER_FILES[0]).is_file()) if adapters_dir().is_dir() else []
        raise EngineError(
            f"no LoRA adapter {name!r} (looked in {folder}); train one with `podforge train-music DATASET_DIR --name {Path(name).name}`"
            + (f"; adapters here: {', '.join(known)}" if known else ""),
            field=field,
        )
    return folder.resolve()


def pin_adapter(spec: EngineSpec) -> EngineSpec:
    """``spec`` with its ``adapter`` name pinned to the adapter's content: ``adapter_sha256`` joins the settings.

    The settings are part of every cache key, so a retrained adapter of the same name makes new beds.
    """
    name = spec.settings.get("adapter")
    if not name or spec.impl.split(":")[0] != __name__:
        return spec
    folder = find_adapter(str(name), field=f"engines.{spec.name}.settings.adapter")
    return spec.model_copy(update={"settings": {**spec.settings, "adapter": str(name), "adapter_sha256": adapter_sha256(folder)}})


class MusicGenEngine(Engine[MusicRequest, MusicResult]):
    name = "musicgen"
    kind = "music"
    version = "1"
    Request = MusicRequest
    Result = MusicResult
    Settings = MusicGenSettings
    settings: MusicGenSettings

    @classmethod
    def resources_for(cls, settings: MusicGenSettings) -> Resources:
        if settings.device == "cpu":
            return Resources(device="cpu", env=ENV, cpu_fallback=True)
        size = next((size for size in VRAM_GB_BY_SIZE if str(settings.model).endswith(f"musicgen-{size}")), "small")
        return Resources(device="cuda", vram_gb=settings.vram_gb if settings.vram_gb is not None else VRAM_GB_BY_SIZE[size], env=ENV, cpu_fallback=True)

    def run(self, request: MusicRequest, workdir: Path) -> MusicResult:
        settings = self.settings
        duration_s = request.duration_s or settings.loop_s
        runner_request = {"prompt": request.prompt, "duration_s": duration_s + settings.crossfade_s, "seed": request.seed}
        response = run_in_env(ENV, self.name, settings.model_dump(mode="json"), runner_request, workdir, timeout_s=settings.timeout_s)
        result = response.result
        generated, sample_rate = soundfile.read(result["wav"], dtype="float32", always_2d=False)
        bed = make_loop(generated, round(duration_s * sample_rate))
        bed_wav = workdir / "bed.wav"
        with atomic_path(bed_wav) as tmp:
            soundfile.write(tmp, bed, sample_rate, subtype="PCM_16", format="WAV")
        return MusicResult(
            wav=bed_wav,
            duration_s=len(bed) / sample_rate,
            loopable=True,
            description=f"MusicGen ({Path(str(settings.model)).name}, {response.device}): {request.prompt!r}, seed {request.seed}, {result['segments']} window(s)",
        )


def adapter_note(adapter: str | None, settings: dict[str, Any]) -> str:
    return f" + LoRA {Path(str(adapter)).name} sha256:{settings['adapter_sha256'][:12]}" if adapter else ""


def make_loop(audio: np.ndarray, samples: int) -> np.ndarray:
    """The first ``samples`` of ``audio``, with the audio that follows them crossfaded over their start.

    At the loop point the bed's last sample is followed by (mostly) ``audio[samples]``, the sample that
    really followed it; the seam's weight then moves, with equal power, back to the bed's own start.
    """
    if len(audio) < samples:
        raise EngineError(f"MusicGen returned {len(audio)} samples, fewer than the {samples} asked for", field="engines.musicgen")
    seam = min(len(audio) - samples, samples)
    looped = audio[:samples].copy()
    if seam:
        ramp = np.linspace(0.0, math.pi / 2, seam, dtype=np.float32)
        looped[:seam] = audio[samples : samples + seam] * np.cos(ramp) + audio[:seam] * np.sin(ramp)
    return looped
