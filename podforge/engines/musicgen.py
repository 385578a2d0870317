"""MusicGen music beds, run in an isolated environment by one of two backends.

``backend: transformers`` (the default) runs Hugging Face transformers in the ``musicgen`` environment;
``backend: audiocraft`` runs Meta's audiocraft 1.3.0 in the ``audiocraft`` environment. Both runners take the
same request and give the same result, continue beds longer than one window the same way
(``external/_common/music_windows.py``) and the engine makes the same seamless loop from either.

Settings (``engines.musicgen.settings``): ``backend``, ``model`` (``facebook/musicgen-small|medium|large|melody``
from the Hugging Face cache, or a local folder: saved with ``save_pretrained`` for transformers, holding
``state_dict.bin`` and ``compression_state_dict.bin`` for audiocraft; a relative folder is read under
``$PODFORGE_HOME/models``), ``loop_s`` (the bed's length when the request names none: 30),
``guidance_scale``, ``temperature``, ``top_k``, ``window_s``, ``overlap_s``, ``crossfade_s``, ``device``,
``fp16``, ``vram_gb`` and ``adapter``; ``external/musicgen/runner.py`` says how beds longer than one window
are made.

``adapter`` is a LoRA made by ``podforge train-music --name STYLE``, named by its style (read from
``$PODFORGE_HOME/adapters/STYLE/lora``) or by the path of a folder saved by peft. Being a path setting, it
enters the music step's key by content: a retrained adapter of the same name makes a new bed. The bed's
result notes name the adapter and its sha256, and the manifest shows them.

The bed loops without a click: the runner generates ``crossfade_s`` (1 s) more than asked, and that extra
tail is crossfaded (equal power) over the bed's start, so when the bed repeats its last sample is followed
by what the model generated after it. The bed keeps the model's rate (32 kHz mono); the mix resamples it.

The released MusicGen weights are licensed CC-BY-NC 4.0 (non-commercial use only); the code that runs
them (transformers: Apache-2.0; audiocraft's code: MIT) is not the restriction.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
from pydantic import Field, field_validator, model_validator

from podforge.config import models_dir, podforge_home
from podforge.engines.base import Engine, EngineSettings, MusicRequest, MusicResult, Resources
from podforge.errors import EngineError
from podforge.io import atomic_path, sha256_file
from podforge.runner import run_in_env

ENV_BY_BACKEND = {"transformers": "musicgen", "audiocraft": "audiocraft"}
MODEL_FILES_BY_BACKEND = {"transformers": ("config.json",), "audiocraft": ("state_dict.bin", "compression_state_dict.bin")}
DEFAULT_MODEL = "facebook/musicgen-small"
DEFAULT_LOOP_S = 30.0
DEFAULT_CROSSFADE_S = 1.0
VRAM_GB_BY_SIZE = {"small": 3.0, "medium": 8.0, "melody": 8.0, "large": 16.0}
"""Peak VRAM of fp16 inference, rounded up; a local folder is assumed small unless ``vram_gb`` says otherwise."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""A peft LoRA: what an adapter folder must hold (and all the published ``lora`` folder holds)."""
LORA_FOLDER = "lora"
STYLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A style's name: it names its folder under :func:`adapters_dir`."""


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


def adapters_dir() -> Path:
    """Where ``podforge train-music`` publishes adapters: ``STYLE/lora`` (the LoRA), beside its model card."""
    return podforge_home() / "adapters"


def adapter_location(value: str | Path) -> Path:
    """A style name's LoRA folder (``my-style`` → ``adapters/my-style/lora``), or a folder path made absolute."""
    if isinstance(value, str) and STYLE_NAME.match(value):
        return adapters_dir() / value / LORA_FOLDER
    return Path(value).expanduser().resolve()


def adapter_name(folder: Path) -> str:
    """The style an adapter folder holds (``adapters/STYLE/lora`` → ``STYLE``), else the folder's own name."""
    return folder.parent.name if folder.name == LORA_FOLDER else folder.name


def adapter_sha256(folder: Path) -> str:
    """sha256 over the LoRA's configuration and weights (names and contents): what the manifest shows."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(f"{name}\n{sha256_file(folder / name)}\n".encode())
    return digest.hexdigest()


def missing_adapter(folder: Path) -> str:
    name = adapter_name(folder)
    known = sorted(p.parent.name for p in adapters_dir().glob(f"*/{LORA_FOLDER}/{ADAPTER_FILES[0]}")) if adapters_dir().is_dir() else []
    return f"no LoRA adapter {name!r} in {folder}; train one with `podforge train-music DATASET_DIR --name {name}`" + (
        f" (adapters here: {', '.join(known)})" if known else ""
    )


class MusicGenSettings(EngineSettings):
    backend: Literal["transformers", "audiocraft"] = Field(default="transformers", description="which library runs the model, each in its own environment")
    model: Path | str = Field(default=DEFAULT_MODEL, description="a Hub id from the local cache, or a local folder (see the module's doc)")
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
    adapter: Path | None = Field(default=None, description="a LoRA from `podforge train-music`: its style name, or a folder saved by peft")

    @field_validator("model", mode="before")
    @classmethod
    def _folder_or_hub_id(cls, value: str | Path) -> str | Path:
        return model_location(value)

    @field_validator("adapter", mode="before")
    @classmethod
    def _style_or_folder(cls, value: str | Path | None) -> Path | None:
        return adapter_location(value) if value else None

    @field_validator("adapter")
    @classmethod
    def _trained_adapter(cls, folder: Path | None) -> Path | None:
        if folder is not None and not all((folder / name).is_file() for name in ADAPTER_FILES):
            raise ValueError(missing_adapter(folder))
        return folder

    @model_validator(mode="after")
    def _saved_model_folder(self) -> MusicGenSettings:
        if isinstance(self.model, Path):
            missing = [name for name in MODEL_FILES_BY_BACKEND[self.backend] if not (self.model / name).is_file()]
            if missing:
                raise ValueError(f"{self.model} is not a saved MusicGen model for the {self.backend} backend (no {', '.join(missing)} there)")
        if self.adapter is not None and self.backend != "transformers":
            raise ValueError(f"a LoRA adapter ({self.adapter}) runs on the transformers backend only (peft); backend is {self.backend!r}")
        return self

    @property
    def env(self) -> str:
        return ENV_BY_BACKEND[self.backend]


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
            return Resources(device="cpu", env=settings.env, cpu_fallback=True)
        size = next((size for size in VRAM_GB_BY_SIZE if str(settings.model).endswith(f"musicgen-{size}")), "small")
        return Resources(device="cuda", vram_gb=settings.vram_gb if settings.vram_gb is not None else VRAM_GB_BY_SIZE[size], env=settings.env, cpu_fallback=True)

    def run(self, request: MusicRequest, workdir: Path) -> MusicResult:
        settings = self.settings
        duration_s = request.duration_s or settings.loop_s
        runner_request = {"prompt": request.prompt, "duration_s": duration_s + settings.crossfade_s, "seed": request.seed}
        response = run_in_env(settings.env, self.name, settings.model_dump(mode="json"), runner_request, workdir, timeout_s=settings.timeout_s)
        result = response.result
        generated, sample_rate = soundfile.read(result["wav"], dtype="float32", always_2d=False)
        bed = make_loop(generated, round(duration_s * sample_rate))
        bed_wav = workdir / "bed.wav"
        with atomic_path(bed_wav) as tmp:
            soundfile.write(tmp, bed, sample_rate, subtype="PCM_16", format="WAV")
        notes = {"adapter": adapter_name(settings.adapter), "adapter_sha256": adapter_sha256(settings.adapter)} if settings.adapter else {}
        lora = f" + LoRA {notes['adapter']} sha256:{notes['adapter_sha256'][:12]}" if notes else ""
        return MusicResult(
            wav=bed_wav,
            duration_s=len(bed) / sample_rate,
            loopable=True,
            description=f"MusicGen ({settings.backend}, {Path(str(settings.model)).name}{lora}, {response.device}): {request.prompt!r}, seed {request.seed}, {result['segments']} window(s)",
            notes=notes,
        )


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
