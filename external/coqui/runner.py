"""The ``coqui`` runner: Coqui TTS (the maintained ``coqui-tts`` fork) in its own environment.

Request: ``{"chunks": [str, ...], "language": str, "pause_s": float, "seed": int}``. The chunks are sentences
already normalised for speech; each is synthesised alone and the pieces are joined with ``pause_s`` of
silence. ``seed`` (the QA take number) seeds torch's sampling, so each take is reproducible and different.
Result: ``{"wav", "sample_rate", "spans": [[start, end], ...] (samples of each chunk), "model", "fp16"}``.

Settings: ``model`` (a Coqui model name such as ``tts_models/multilingual/multi-dataset/xtts_v2``) or
``model_path`` + ``config_path`` (a checkpoint file, or for XTTS a folder, and its config.json);
``speaker`` (a speaker of a multi-speaker model), ``speaker_wav`` (reference WAV, or a list, for cloning),
``language``, ``device`` (``cuda``, the default, or ``cpu``), ``fp16`` (default true: autocast on CUDA).

Nothing is downloaded: the runner sets ``HF_HUB_OFFLINE=1`` and ``COQUI_TOS_AGREED=1`` before Coqui is
imported, so a model that is not already on disk fails at once with a message saying where to put it,
instead of a download attempt or the licence prompt (which dies with EOFError without a terminal).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COQUI_TOS_AGREED", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from podforge_runner import pick_device, serve, write_wav_atomic  # noqa: E402


class WeightsMissing(RuntimeError):
    """A named model whose weights are not on this machine."""


def weights_hint(model_name: str) -> str:
    """Where the weights of ``model_name`` are looked for, and how to put them there."""
    from TTS.utils.manage import ModelManager
    from huggingface_hub import constants

    manager = ModelManager(progress_bar=False)
    model_type, lang, dataset, model = model_name.split("/")
    item = manager.models_dict[model_type][lang][dataset][model]
    if "repo_id" in item:
        return (
            f"its weights come from the Hugging Face repository {item['repo_id']}, which is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); on a machine with internet run `hf download {item['repo_id']}` and copy the "
            f"folder models--{item['repo_id'].replace('/', '--')} into that cache (or set HF_HOME), or download the files "
            "into a folder and set model_path (the folder) and config_path (its config.json)"
        )
    folder = manager.output_prefix / f"{model_type}--{lang}--{dataset}--{model}"
    return (
        f"its weights are looked for in {folder}; copy that folder from a machine where "
        f"`tts --model_name {model_name} --text hi` has run (set TTS_HOME to move the model directory), "
        "or set model_path and config_path to the checkpoint and its config.json"
    )


def load_tts(settings: dict, device: str):
    from TTS.api import TTS

    if settings.get("model_path"):
        config_path = settings.get("config_path") or str(Path(settings["model_path"]) / "config.json")
        return TTS(model_path=settings["model_path"], config_path=config_path, progress_bar=False).to(device), settings["model_path"]
    model_name = settings.get("model")
    if not model_name:
        raise ValueError("set either `model` (a Coqui model name) or `model_path` and `config_path` in the voice's settings")
    from TTS.utils.manage import ModelManager

    if model_name.count("/") != 3 or not _known_model(ModelManager(progress_bar=False).models_dict, model_name):
        raise ValueError(f"unknown Coqui model {model_name!r}; names look like tts_models/<language>/<dataset>/<model> (`tts --list_models` lists them)")
    try:
        return TTS(model_name, progress_bar=False).to(device), model_name
    except (OSError, ValueError) as exc:  # huggingface_hub's LocalEntryNotFoundError and requests' ConnectionError are OSErrors
        raise WeightsMissing(f"Coqui model {model_name!r} is not available offline: {weights_hint(model_name)} ({type(exc).__name__})") from None


def _known_model(models: dict, name: str) -> bool:
    node = models
    for part in name.split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def synthesis_options(tts, settings: dict, language: str | None) -> dict:
    options: dict = {}
    if tts.is_multi_lingual:
        options["language"] = settings.get("language") or language
    if settings.get("speaker_wav"):
        wavs = settings["speaker_wav"] if isinstance(settings["speaker_wav"], list) else [settings["speaker_wav"]]
        for wav in wavs:
            if not Path(wav).is_file():
                raise FileNotFoundError(f"speaker_wav {wav} does not exist (the reference recording to clone)")
        options["speaker_wav"] = wavs
    elif settings.get("speaker"):
        options["speaker"] = settings["speaker"]
    elif tts.is_multi_speaker and tts.speakers:
        options["speaker"] = tts.speakers[0]
        print(f"coqui: no speaker chosen; using {options['speaker']!r} (one of {len(tts.speakers)})", flush=True)
    return options


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    write_wav_atomic(path, (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes(), sample_rate)


class LoadedVoice:
    """A loaded Coqui model and what every request of this voice shares."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.device = pick_device(settings, torch.cuda.is_available(), "coqui")
        self.tts, self.model = load_tts(settings, self.device)
        self.sample_rate = int(self.tts.synthesizer.output_sample_rate)
        self.fp16 = self.device == "cuda" and bool(settings.get("fp16", True))


def load(engine: str, settings: dict) -> LoadedVoice:
    return LoadedVoice(settings)


def handle(voice: LoadedVoice, request: dict, workdir: Path) -> tuple[dict, str]:
    chunks = [chunk for chunk in request.get("chunks", []) if chunk.strip()]
    if not chunks:
        raise ValueError("nothing to say: the request has no text")
    options = synthesis_options(voice.tts, voice.settings, request.get("language"))
    sample_rate = voice.sample_rate
    autocast = torch.autocast("cuda", dtype=torch.float16) if voice.fp16 else contextlib.nullcontext()
    pause = np.zeros(int(float(request.get("pause_s", 0.2)) * sample_rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    spans: list[list[int]] = []
    cursor = 0
    torch.manual_seed(int(request.get("seed", 0)))
    with torch.inference_mode(), autocast:
        for number, chunk in enumerate(chunks):
            if number:
                pieces.append(pause)
                cursor += len(pause)
            audio = np.asarray(voice.tts.tts(text=chunk, split_sentences=False, **options), dtype=np.float32)
            pieces.append(audio)
            spans.append([cursor, cursor + len(audio)])
            cursor += len(audio)
            print(f"coqui: chunk {number + 1}/{len(chunks)}: {len(audio) / sample_rate:.2f} s", flush=True)
    wav_path = workdir / "speech.wav"
    write_wav(wav_path, np.concatenate(pieces), sample_rate)
    result = {"wav": str(wav_path), "sample_rate": sample_rate, "spans": spans, "model": voice.model, "fp16": voice.fp16}
    print("coqui: " + json.dumps({"device": voice.device, "model": voice.model, "seconds": cursor / sample_rate}), flush=True)
    return result, voice.device


if __name__ == "__main__":
    serve(load, handle, report_versions=("torch", "TTS", "transformers"))
