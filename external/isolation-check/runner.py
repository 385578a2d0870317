"""The isolation-check runner: reports what this environment sees, and misbehaves on request.

Modes (``settings["mode"]``, one per worker), used by the tests of the runner protocol and the workers:

* ``versions`` reports the versions and locations of six and idna, the settings it was given, its pid
  and working directory;
* ``fail`` raises (an ``ok: false`` response);
* ``crash`` prints a few lines and exits 3 without a response;
* ``crash-on`` crashes like ``crash`` on this process's ``settings["crash_on"]``-th request (a restarted
  worker counts from one again);
* ``hang`` writes its pid to ``workdir/runner.pid``, starts a grandchild ``sleep`` process, writes that
  pid to ``workdir/grandchild.pid`` and sleeps (for timeouts and cancels).

Per request: ``say`` (printed, three lines), ``fail`` (raise), ``hog_mb`` (allocate and touch that
many MB), ``wait_for`` (a file to wait for before answering). Each request appends the worker's pid to
``workdir/requests.log``. ``handle_batch`` serves a batch request by request and fails the whole batch
if one of them fails (the task side then serves them one by one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from podforge_runner import serve


def report_versions(settings: dict) -> dict:
    import idna
    import six

    return {
        "settings": settings,
        "six": six.__version__,
        "six_file": six.__file__,
        "idna": idna.__version__,
        "idna_file": idna.__file__,
        "prefix": sys.prefix,
        "executable": sys.executable,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
    }


def hang(workdir: Path) -> None:
    (workdir / "runner.pid").write_text(str(os.getpid()))
    grandchild = subprocess.Popen(["sleep", "600"])
    (workdir / "grandchild.pid").write_text(str(grandchild.pid))
    print(f"started grandchild {grandchild.pid}", flush=True)
    time.sleep(600)


def crash() -> None:
    for number in range(30):
        print(f"crash log line {number}", file=sys.stderr, flush=True)
    os._exit(3)


def load(engine: str, settings: dict) -> dict:
    print(f"isolation-check: loading for engine={engine} (pid {os.getpid()})", flush=True)
    return {"engine": engine, "settings": settings, "served": 0}


def handle(loaded: dict, request: dict, workdir: Path) -> tuple[dict, str]:
    engine, settings = loaded["engine"], loaded["settings"]
    loaded["served"] += 1
    with open(workdir / "requests.log", "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()}\n")
    mode = settings.get("mode", "versions")
    print(f"isolation-check: engine={engine} mode={mode}", flush=True)
    if request.get("say"):
        for number in range(3):
            print(f"isolation-check says {request['say']} ({number})", flush=True)
    if request.get("wait_for"):
        while not Path(request["wait_for"]).exists():
            time.sleep(0.05)
    if mode == "fail" or request.get("fail"):
        raise ValueError(f"asked to fail: {request.get('reason', 'no reason')}")
    if mode == "crash" or (mode == "crash-on" and loaded["served"] == int(settings.get("crash_on", 2))):
        crash()
    if mode == "hang":
        hang(workdir)
    if request.get("hog_mb"):
        hog = bytearray(int(request["hog_mb"]) * 1024 * 1024)
        hog[::4096] = b"x" * len(hog[::4096])
    return report_versions(settings), "cpu"


def handle_batch(loaded: dict, items: list[tuple[dict, Path]]) -> list[tuple[dict, str]]:
    print(f"isolation-check: a batch of {len(items)}", flush=True)
    return [handle(loaded, request, workdir) for request, workdir in items]


if __name__ == "__main__":
    serve(load, handle, report_versions=("six", "idna"), handle_batch=handle_batch)
