"""The isolation-check runner: reports what this environment sees, and misbehaves on request.

Modes (``settings["mode"]``), used by the tests of the runner protocol:

* ``versions`` reports the versions and locations of six and idna, and the settings it was given;
* ``fail`` raises (an ``ok: false`` response);
* ``crash`` prints a few lines and exits 3 without a response;
* ``hang`` writes its pid to ``workdir/runner.pid``, starts a grandchild ``sleep`` process, writes that
  pid to ``workdir/grandchild.pid`` and sleeps (for timeouts and cancels).
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
    }


def hang(workdir: Path) -> None:
    (workdir / "runner.pid").write_text(str(os.getpid()))
    grandchild = subprocess.Popen(["sleep", "600"])
    (workdir / "grandchild.pid").write_text(str(grandchild.pid))
    print(f"started grandchild {grandchild.pid}", flush=True)
    time.sleep(600)


def load(engine: str, settings: dict) -> dict:
    return {"engine": engine, "settings": settings}


def handle(loaded: dict, request: dict, workdir: Path) -> tuple[dict, str]:
    engine, settings = loaded["engine"], loaded["settings"]
    mode = settings.get("mode", "versions")
    print(f"isolation-check: engine={engine} mode={mode}", flush=True)
    if mode == "fail":
        raise ValueError(f"asked to fail: {request.get('reason', 'no reason')}")
    if mode == "crash":
        for number in range(30):
            print(f"crash log line {number}", file=sys.stderr, flush=True)
        os._exit(3)
    if mode == "hang":
        hang(workdir)
    return report_versions(settings), "cpu"


if __name__ == "__main__":
    serve(load, handle, report_versions=("six", "idna"))
