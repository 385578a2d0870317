"""The runner's side of the Podforge engine protocol (standard library only).

A runner module defines ``load(engine, settings) -> state`` (imports and loads the model: once per
process) and ``handle(state, request, workdir) -> (result, device)`` (one request), and ends with
``serve(load, handle)``. See ``external/README.md``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
import wave
from pathlib import Path
from typing import Any, Callable

Loader = Callable[[str, dict], Any]
Handler = Callable[[Any, dict, Path], "tuple[dict, str]"]


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".response.", dir=str(path.parent))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(tmp, path)


def pick_device(settings: dict, cuda_available: bool, engine: str) -> str:
    """``cuda`` when asked for (the default) and torch sees a GPU; else ``cpu``, saying so in the log."""
    if settings.get("device", "cuda") == "cuda":
        if cuda_available:
            return "cuda"
        print(f"{engine}: CUDA was asked for but torch sees no GPU (a CPU-only torch, or no device); running on the CPU", flush=True)
    return "cpu"


def write_wav_atomic(path: Path, pcm16: bytes, sample_rate: int, channels: int = 1) -> None:
    """Write 16-bit little-endian PCM as a WAV file, through a temporary name and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm16)
    os.replace(tmp, path)


def versions(*modules: str) -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in modules:
        try:
            found[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a version we cannot read is simply not reported
            continue
    return found


def serve(load: Loader, handle: Handler, *, report_versions: tuple[str, ...] = ()) -> None:
    """Read the request, ``load`` then ``handle`` it, write the response. Exit 0 even when they raise."""
    request_path, response_path = Path(sys.argv[1]), Path(sys.argv[2])
    message = json.loads(request_path.read_text(encoding="utf-8"))
    workdir = Path(message["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        state = load(message["engine"], message.get("settings", {}))
        result, device = handle(state, message.get("request", {}), workdir)
        payload = {"ok": True, "result": result, "device": device, "versions": versions(*report_versions)}
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the task as data
        traceback.print_exc()
        payload = {"ok": False, "error": str(exc) or type(exc).__name__, "error_type": type(exc).__name__}
    sys.stdout.flush()
    write_json_atomic(response_path, payload)
