"""The ``audiocraft`` runner: MusicGen through Meta's audiocraft 1.3.0, in its own environment.

The same protocol as the ``musicgen`` (transformers) runner, so the engine can use either backend.
Request: ``{"prompt": str, "duration_s": float, "seed": int}``. Result: ``{"wav", "sample_rate",
"duration_s", "segments", "model", "fp16"}``: a mono WAV of exactly ``round(duration_s * sample_rate)``
samples.

Settings: ``model`` (``facebook/musicgen-small|medium|large|melody`` from the Hugging Face cache, or a local
folder holding ``state_dict.bin`` and ``compression_state_dict.bin`` as audiocraft saves them),
``guidance_scale`` (3.0, audiocraft's ``cfg_coef``), ``temperature`` (1.0), ``top_k`` (250), ``window_s``
(at most the model's ``max_duration``, 30 s), ``overlap_s`` (5), ``device`` (``cuda``, the default, or
``cpu``) and ``fp16`` (default true; CUDA only: audiocraft's loaders then build the LM in float16).

The model is loaded with ``MusicGen.get_pretrained`` (audiocraft's public loading path). A window of ``n``
codec frames is ``generate`` (or ``generate_continuation`` with the last ``overlap_s`` as the prompt) with
``duration = (n + 0.5) / frame_rate``: audiocraft makes ``int(duration * frame_rate)`` frames.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from music_windows import generate_long, write_bed_wav  # noqa: E402
from podforge_runner import pick_device, serve  # noqa: E402


def weights_missing(name: str, exc: Exception) -> str:
    if Path(name).is_absolute() or name.startswith("."):
        return f"audiocraft model folder {name} is missing or incomplete (expected state_dict.bin and compression_state_dict.bin): {exc}"
    return (
        f"audiocraft weights {name!r} are not in the Hugging Face cache and nothing is downloaded at run time; on a machine with "
        f"internet run `hf download {name}` and copy the cache folder over (or set HF_HOME), or set the engine's `model` to a local folder"
    )


def load_model(name: str, device: str, fp16: bool):
    from audiocraft.models import MusicGen

    try:
        model = MusicGen.get_pretrained(name, device=device)
    except (OSError, FileNotFoundError) as exc:
        raise RuntimeError(weights_missing(name, exc)) from None
    if not fp16:
        model.lm = model.lm.float()
    return model


class Generator:
    """One loaded audiocraft MusicGen and its generation settings; produces audio window by window."""

    def __init__(self, model, prompt: str, settings: dict):
        self.model = model
        self.prompt = prompt
        self.sample_rate = int(model.sample_rate)
        self.frame_rate = int(model.frame_rate)
        self.hop = self.sample_rate // self.frame_rate
        self.options = {
            "use_sampling": True,
            "top_k": int(settings.get("top_k", 250)),
            "temperature": float(settings.get("temperature", 1.0)),
            "cfg_coef": float(settings.get("guidance_scale", 3.0)),
            "extend_stride": model.max_duration / 2,  # never used: windows stay within max_duration
        }

    def generate(self, frames: int, prompt_audio: np.ndarray | None = None) -> np.ndarray:
        prompt_frames = 0 if prompt_audio is None else len(prompt_audio) // self.hop
        self.model.set_generation_params(duration=(prompt_frames + frames + 0.5) / self.frame_rate, **self.options)
        with torch.inference_mode():
            if prompt_audio is None:
                audio = self.model.generate([self.prompt])
            else:
                prompt = torch.from_numpy(np.ascontiguousarray(prompt_audio, dtype=np.float32))[None, None, :].to(self.model.device)
                audio = self.model.generate_continuation(prompt, self.sample_rate, [self.prompt])
        return audio[0, 0].float().cpu().numpy()


class LoadedModel:
    """A loaded audiocraft MusicGen, on the device chosen once per process."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.device = pick_device(settings, torch.cuda.is_available(), "audiocraft")
        self.fp16 = self.device == "cuda" and bool(settings.get("fp16", True))
        self.name = str(settings.get("model", "facebook/musicgen-small"))
        self.model = load_model(self.name, self.device, self.fp16)


def load(engine: str, settings: dict) -> LoadedModel:
    return LoadedModel(settings)


def handle(loaded: LoadedModel, request: dict, workdir: Path) -> tuple[dict, str]:
    duration_s = float(request["duration_s"])
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, not {duration_s}")
    torch.manual_seed(int(request.get("seed", 0)))
    settings = loaded.settings
    generator = Generator(loaded.model, request.get("prompt", ""), settings)
    samples = round(duration_s * generator.sample_rate)
    window_s = min(float(settings.get("window_s", loaded.model.max_duration)), loaded.model.max_duration)
    audio, segments = generate_long(generator, samples, window_s, float(settings.get("overlap_s", 5.0)))
    wav_path = workdir / "generated.wav"
    write_bed_wav(wav_path, audio[:samples], generator.sample_rate)
    result = {"wav": str(wav_path), "sample_rate": generator.sample_rate, "duration_s": samples / generator.sample_rate, "segments": segments, "model": loaded.name, "fp16": loaded.fp16}
    return result, loaded.device


if __name__ == "__main__":
    serve(load, handle, report_versions=("torch", "audiocraft"))
