"""The ``whisper`` runner: faster-whisper (CTranslate2) on the GPU, for the speech QA step.

Request: ``{"audio": path, "language": str, "options": {...WhisperModel.transcribe options}}``.
Result: ``{"text": str, "words": [{"text", "start_s", "end_s"}, ...], "model": str, "compute_type": str}``.

Settings: ``model`` (a folder of CTranslate2 Whisper weights, or a faster-whisper model name that is
already in the local Hugging Face cache: ``HF_HUB_OFFLINE=1`` and ``local_files_only`` mean nothing is
downloaded), ``device`` (``cuda``, the default, or ``cpu``), ``compute_type`` (default ``float16`` on
CUDA, ``int8`` on the CPU), ``device_index``.

CTranslate2's wheel opens ``libcublas.so.12`` at run time. This environment installs it as the
``nvidia-cublas-cu12`` wheel; the runner loads it (and cuBLASLt) by full path before CTranslate2 asks, so
no ``LD_LIBRARY_PATH`` is needed.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from podforge_runner import pick_device, serve  # noqa: E402


def preload_cublas() -> bool:
    """Load the pip-installed cuBLAS libraries globally; False when this environment has none."""
    try:
        import nvidia.cublas
    except ImportError:
        return False
    folder = Path(next(iter(nvidia.cublas.__path__))) / "lib"
    for name in ("libcublasLt.so.12", "libcublas.so.12"):
        if (folder / name).is_file():
            ctypes.CDLL(str(folder / name), mode=ctypes.RTLD_GLOBAL)
    return True


class LoadedRecogniser:
    def __init__(self, settings: dict):
        preload_cublas()
        import ctranslate2
        from faster_whisper import WhisperModel

        self.device = pick_device(settings, ctranslate2.get_cuda_device_count() > 0, "whisper")
        self.compute_type = settings.get("compute_type") or ("float16" if self.device == "cuda" else "int8")
        self.model_name = str(settings["model"])
        self.model = WhisperModel(self.model_name, device=self.device, device_index=int(settings.get("device_index", 0)), compute_type=self.compute_type, local_files_only=True)


def load(engine: str, settings: dict) -> LoadedRecogniser:
    return LoadedRecogniser(settings)


def handle(recogniser: LoadedRecogniser, request: dict, workdir: Path) -> tuple[dict, str]:
    audio = request["audio"]
    if not Path(audio).is_file():
        raise FileNotFoundError(f"no audio at {audio}")
    segments, info = recogniser.model.transcribe(audio, **request.get("options", {}))
    words = [word for segment in segments for word in segment.words or []]
    result = {
        "text": "".join(word.word for word in words).strip(),
        "words": [{"text": word.word.strip(), "start_s": float(word.start), "end_s": float(word.end)} for word in words if word.word.strip()],
        "model": recogniser.model_name,
        "compute_type": recogniser.compute_type,
    }
    print("whisper: " + json.dumps({"device": recogniser.device, "audio_s": round(info.duration, 2), "words": len(result["words"])}), flush=True)
    return result, recogniser.device


if __name__ == "__main__":
    serve(load, handle, report_versions=("faster_whisper", "ctranslate2"))
