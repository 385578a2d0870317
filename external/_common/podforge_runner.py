"""The runner's side of the Podforge engine protocol (standard library only).

A runner module defines ``load(engine, settings) -> state`` (imports and loads the model: once per
process) and ``handle(state, request, workdir) -> (result, device)`` (one request), optionally
``handle_batch(state, items) -> [(result, device), ...]`` (several queued requests at once), and ends
with ``serve(load, handle, ...)``. See ``external/README.md`` for the wire format.

``serve`` runs a long-lived worker: it loads once, then answers JSON-line requests read from one pipe
with JSON-line responses written to another, until that pipe closes. stdout and stderr stay free for
logs; a marker line (``MARK``) before and after each request tells the task side whose log a line
belongs to. The worker never outlives the process that started it: pipe EOF, ``PR_SET_PDEATHSIG`` and a
parent-pid watchdog each kill the worker's process group (itself and anything it started).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
import wave
from pathlib import Path
from typing import Any, Callable

Loader = Callable[[str, dict], Any]
Handler = Callable[[Any, dict, Path], "tuple[dict, str]"]
BatchHandler = Callable[[Any, "list[tuple[dict, Path]]"], "list[tuple[dict, str]]"]

MARK = "\x1epodforge:"
"""Prefix of the marker lines ``MARK begin <tag>`` / ``MARK end <tag>`` written to stdout and stderr."""
PARENT_PID_VARIABLE = "PODFORGE_PARENT_PID"
MEMORY_LIMIT_VARIABLE = "PODFORGE_MEMORY_LIMIT_MB"
DEFAULT_MAX_BATCH = 16
WATCHDOG_INTERVAL_S = 1.0
PR_SET_PDEATHSIG = 1


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


# --- staying tied to the parent -------------------------------------------------------------------------


def kill_own_group() -> None:
    """SIGKILL this worker's process group (itself and what it started), or just exit when not its leader."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)


def tie_to_parent(parent_pid: int) -> None:
    """Die with the parent: a SIGTERM on its death (Linux) and a watchdog for when that is not available.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that started us exits; the task side starts workers from
    one long-lived thread for that reason. The watchdog also covers the window before ``prctl`` ran.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: kill_own_group())
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_INTERVAL_S)
        kill_own_group()

    threading.Thread(target=watch, name="podforge-parent-watchdog", daemon=True).start()


def limit_memory() -> int | None:
    """Apply ``RLIMIT_DATA`` (heap and private writable mappings) from the environment; the limit in MB.

    A request that needs more gets ``MemoryError`` (or the library's allocation error) and fails alone,
    instead of the kernel's OOM killer picking a process.
    """
    value = os.environ.get(MEMORY_LIMIT_VARIABLE)
    if not value:
        return None
    import resource

    limit = int(value) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return int(value)


# --- the worker loop ------------------------------------------------------------------------------------


def mark(kind: str, tag: str) -> None:
    """Write a marker line to stdout and stderr, after everything printed before it."""
    sys.stdout.flush()
    sys.stderr.flush()
    line = f"{MARK}{kind} {tag}\n".encode()
    for fd in (1, 2):
        try:
            os.write(fd, line)
        except OSError:
            pass


def failure(exc: BaseException) -> dict[str, Any]:
    traceback.print_exc()
    return {"ok": False, "error": str(exc) or type(exc).__name__, "error_type": type(exc).__name__}


class Worker:
    """Reads requests on one pipe, answers on another; the main thread computes."""

    def __init__(self, requests_fd: int, responses_fd: int):
        for fd in (requests_fd, responses_fd):
            os.set_inheritable(fd, False)  # a process the runner starts must not hold our pipes open
        self.inbox: queue.Queue[dict | None] = queue.Queue()
        self.busy = threading.Event()
        self.responses = os.fdopen(responses_fd, "w", encoding="utf-8", buffering=1)
        threading.Thread(target=self._read, args=(requests_fd,), name="podforge-requests", daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                if line.strip():
                    self.inbox.put(json.loads(line))
        if self.busy.is_set():  # the task side is gone (or gave up on us) while we compute: stop now
            kill_own_group()
        self.inbox.put(None)

    def reply(self, payload: dict[str, Any]) -> None:
        self.responses.write(json.dumps(payload, default=str) + "\n")
        self.responses.flush()

    def timed(self, tag: str, work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """Run ``work(*args)`` between markers, as busy, and add how long it took."""
        self.busy.set()
        mark("begin", tag)
        started = time.perf_counter()
        try:
            payload = work(*args)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the task as data
            payload = failure(exc)
        payload["seconds"] = round(time.perf_counter() - started, 6)
        mark("end", tag)
        self.busy.clear()
        return payload


def serve(load: Loader, handle: Handler, *, report_versions: tuple[str, ...] = (), handle_batch: BatchHandler | None = None) -> None:
    """Load once, then answer requests until the request pipe closes.

    Started by the task side as ``python runner.py --fds R W`` with ``R`` (requests) and ``W``
    (responses) inherited. The first message names the engine and its settings; every later one is a
    request (``{"id", "request", "workdir"}``) or a batch (``{"id", "batch": [{"request", "workdir"}, ...]}``).
    """
    parser = argparse.ArgumentParser(description="A Podforge engine runner (started by podforge.workers).")
    parser.add_argument("--fds", nargs=2, type=int, metavar=("REQUESTS_FD", "RESPONSES_FD"), required=True)
    args = parser.parse_args()
    tie_to_parent(int(os.environ.get(PARENT_PID_VARIABLE) or os.getppid()))
    memory_limit_mb = limit_memory()
    worker = Worker(*args.fds)
    hello = worker.inbox.get()
    if hello is None:
        return
    settings = hello.get("settings", {})
    loaded: dict[str, Any] = {}

    def do_load() -> dict[str, Any]:
        loaded["state"] = load(hello["engine"], settings)
        return {"ok": True}

    ready = worker.timed("load", do_load)
    max_batch = int(settings.get("max_batch", DEFAULT_MAX_BATCH)) if handle_batch is not None else 1
    worker.reply({**ready, "event": "ready", "pid": os.getpid(), "versions": versions(*report_versions), "max_batch": max_batch, "memory_limit_mb": memory_limit_mb})
    if not ready["ok"]:
        return
    state = loaded["state"]
    while (message := worker.inbox.get()) is not None:
        if "batch" in message:
            items = [(item["request"], prepared(item["workdir"])) for item in message["batch"]]
            answer = worker.timed(str(message["id"]), answer_batch, handle_batch, state, items)
        else:
            answer = worker.timed(str(message["id"]), answer_one, handle, state, message["request"], prepared(message["workdir"]))
        worker.reply({**answer, "id": message["id"]})


def prepared(workdir: str) -> Path:
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def answer_one(handle: Handler, state: Any, request: dict, workdir: Path) -> dict[str, Any]:
    os.chdir(workdir)  # one request at a time: the runner's relative paths and subprocesses start here
    result, device = handle(state, request, workdir)
    return {"ok": True, "result": result, "device": device}


def answer_batch(handle_batch: BatchHandler | None, state: Any, items: list[tuple[dict, Path]]) -> dict[str, Any]:
    assert handle_batch is not None, "a batch was sent to a runner without handle_batch"
    answers = handle_batch(state, items)
    if len(answers) != len(items):
        raise RuntimeError(f"handle_batch returned {len(answers)} results for {len(items)} requests")
    return {"ok": True, "results": [{"result": result, "device": device} for result, device in answers]}
