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
``fp16`` and ``vram_gb``; ``external/musicgen/runner.py`` says how beds longer than one window are made.

The bed loops without a click: the runner generates ``crossfade_s`` (1 s) more than asked, and that extra
tail is crossfaded (equal power) over the bed's start, so when the bed repeats its last sample is followed
by what the model generated after it. The bed keeps the model's rate (32 kHz mono); the mix resamples it.

The released MusicGen weights are licensed CC-BY-NC 4.0 (non-commercial use only); the code that runs
them (transformers: Apache-2.0; audiocraft's code: MIT) is not the restriction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
from pydantic import Field, field_validator, model_validator

from podforge.config import models_dir
from podforge.engines.base import Engine, EngineSettings, MusicRequest, MusicResult, Resources
from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.runner import run_in_env

ENV_BY_BACKEND = {"transformers": "musicgen", "audiocraft": "audiocraft"}
MODEL_FILES_BY_BACKEND = {"transformers": ("config.json",), "audiocraft": ("state_dict.bin", "compression_state_dict.bin")}
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

    @field_validator("model", mode="before")
    @classmethod
    def _folder_or_hub_id(cls, value: str | Path) -> str | Path:
        return model_location(value)

    @model_validator(mode="after")
    def _saved_model_folder(self) -> MusicGenSettings:
        if isinstance(self.model, Path):
            missing = [name for name in MODEL_FILES_BY_BACKEND[self.backend] if not (self.model / name).is_file()]
            if missing:
                raise ValueError(f"{self.model} is not a saved MusicGen model for the {self.backend} backend (no {', '.join(missing)} there)")
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
        return MusicResult(
            wav=bed_wav,
            duration_s=len(bed) / sample_rate,
            loopable=True,
            description=f"MusicGen ({settings.backend}, {Path(str(settings.model)).name}, {response.device}): {request.prompt!r}, seed {request.seed}, {result['segments']} window(s)",
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
