"""The ``musicgen`` runner: MusicGen through Hugging Face transformers, in its own environment.

Request: ``{"prompt": str, "duration_s": float, "seed": int}``. Result: ``{"wav", "sample_rate",
"duration_s", "segments", "model", "fp16"}``: a mono WAV of exactly ``round(duration_s * sample_rate)``
samples. (The engine in the main environment turns it into a seamless loop.)

Settings: ``model`` (``facebook/musicgen-small|medium|large|melody`` from the Hugging Face cache, or a
local folder saved with ``save_pretrained``), ``guidance_scale`` (3.0), ``temperature`` (1.0), ``top_k``
(250), ``window_s`` (30: the longest stretch generated at once, as the models were trained),
``overlap_s`` (5: audio carried into the next window as its prompt), ``device`` (``cuda``, the default,
or ``cpu``), ``fp16`` (default true; CUDA only) and ``adapter`` (a folder saved by peft's ``save_pretrained``:
a LoRA trained on the decoder by ``train_runner.py``; it is merged into the decoder's weights at load).

Length arithmetic: one window of ``n`` new tokens decodes to ``n - (codebooks - 1)`` codec frames (the
codebooks are offset by one step each), at ``frame_rate`` (50) frames per second. A bed longer than one
window is continued (``_common/music_windows.py``): the last ``overlap_s`` of what exists is encoded back
to codes and given to the decoder as its prompt. The result is trimmed to the exact length asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from music_windows import generate_long, write_bed_wav  # noqa: E402
from podforge_runner import pick_device, serve  # noqa: E402


def load_model(name: str, device: str, fp16: bool):
    from transformers import AutoConfig, AutoProcessor, MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration

    try:
        config = AutoConfig.from_pretrained(name)
    except OSError as exc:
        raise RuntimeError(weights_missing(name, exc)) from None
    model_class = MusicgenMelodyForConditionalGeneration if config.model_type == "musicgen_melody" else MusicgenForConditionalGeneration
    dtype = torch.float16 if fp16 else torch.float32
    model = model_class.from_pretrained(name, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(name)
    return model, processor


def weights_missing(name: str, exc: Exception) -> str:
    if Path(name).is_absolute() or name.startswith("."):
        return f"MusicGen model folder {name} is missing or incomplete (expected config.json and the weights from save_pretrained): {exc}"
    from huggingface_hub import constants

    return (
        f"MusicGen weights {name!r} are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and nothing is downloaded at run "
        f"time; on a machine with internet run `hf download {name}` and copy the folder models--{name.replace('/', '--')} into "
        "that cache (or set HF_HOME), or set the engine's `model` to a local folder"
    )


class Generator:
    """One loaded model and its generation settings; produces codec audio window by window."""

    def __init__(self, model, processor, prompt: str, settings: dict, device: str):
        self.model = model
        self.device = device
        audio_config = model.config.audio_encoder
        self.sample_rate = int(audio_config.sampling_rate)
        self.frame_rate = int(audio_config.frame_rate)
        self.hop = self.sample_rate // self.frame_rate
        self.codebooks = int(model.decoder.num_codebooks)
        self.text_inputs = processor(text=[prompt], padding=True, return_tensors="pt").to(device)
        self.options = {
            "do_sample": True,
            "guidance_scale": float(settings.get("guidance_scale", 3.0)),
            "temperature": float(settings.get("temperature", 1.0)),
            "top_k": int(settings.get("top_k", 250)),
        }

    def generate(self, frames: int, prompt_audio: np.ndarray | None = None) -> np.ndarray:
        """``frames`` new codec frames, after ``prompt_audio`` when given (returned re-decoded in front)."""
        kwargs = dict(self.text_inputs)
        if prompt_audio is not None:
            values = torch.from_numpy(prompt_audio).to(self.device, self.model.dtype)[None, None, :]
            codes = self.model.audio_encoder.encode(values).audio_codes  # (chunks=1, batch=1, codebooks, frames)
            kwargs["decoder_input_ids"] = codes[0].reshape(self.codebooks, -1)
        with torch.inference_mode():
            audio = self.model.generate(**kwargs, **self.options, max_new_tokens=frames + self.codebooks - 1)
        return audio[0, 0].float().cpu().numpy()


class LoadedModel:
    """A loaded MusicGen model and its processor, on the device chosen once per process."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.device = pick_device(settings, torch.cuda.is_available(), "musicgen")
        self.fp16 = self.device == "cuda" and bool(settings.get("fp16", True))
        self.name = str(settings.get("model", "facebook/musicgen-small"))
        self.model, self.processor = load_model(self.name, self.device, self.fp16)
        self.adapter = settings.get("adapter") or None
        if self.adapter:
            self.model.decoder = merge_adapter(self.model.decoder, str(self.adapter))


def merge_adapter(decoder, adapter: str):
    """The decoder with a LoRA adapter (peft ``save_pretrained`` folder) merged into its weights."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise RuntimeError(f"LoRA adapter folder {adapter} has no adapter_config.json (train one with `podforge train-music`)")
    merged = PeftModel.from_pretrained(decoder, adapter).merge_and_unload()
    print(f"musicgen: LoRA adapter {adapter} merged into the decoder", flush=True)
    return merged.eval()


def load(engine: str, settings: dict) -> LoadedModel:
    return LoadedModel(settings)


def handle(loaded: LoadedModel, request: dict, workdir: Path) -> tuple[dict, str]:
    duration_s = float(request["duration_s"])
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, not {duration_s}")
    torch.manual_seed(int(request.get("seed", 0)))
    settings = loaded.settings
    generator = Generator(loaded.model, loaded.processor, request.get("prompt", ""), settings, loaded.device)
    samples = round(duration_s * generator.sample_rate)
    audio, segments = generate_long(generator, samples, float(settings.get("window_s", 30.0)), float(settings.get("overlap_s", 5.0)))
    wav_path = workdir / "generated.wav"
    write_bed_wav(wav_path, audio[:samples], generator.sample_rate)
    result = {"wav": str(wav_path), "sample_rate": generator.sample_rate, "duration_s": samples / generator.sample_rate, "segments": segments, "model": loaded.name, "fp16": loaded.fp16, "adapter": loaded.adapter}
    return result, loaded.device


if __name__ == "__main__":
    serve(load, handle, report_versions=("torch", "transformers", "peft"))
