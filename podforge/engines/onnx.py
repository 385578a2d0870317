"""ONNX Runtime for engines that run in this process (Piper): imported so that it writes nothing under ``~``.

At import, ONNX Runtime writes a telemetry device id (``Microsoft/DeveloperTools/.onnxruntime/``) under
``$XDG_CACHE_HOME``, else ``~/.cache``. :func:`import_onnxruntime` imports it with ``XDG_CACHE_HOME``
pointing at ``$PODFORGE_HOME/cache`` and then restores the variable, so every cache Podforge makes stays in
``PODFORGE_HOME``. Import it through this function before anything else imports it (``piper`` does).
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

from podforge.config import podforge_home

_lock = threading.Lock()


def import_onnxruntime() -> ModuleType:
    with _lock:
        if "onnxruntime" not in sys.modules:
            cache = podforge_home() / "cache"
            cache.mkdir(parents=True, exist_ok=True)
            before = os.environ.get("XDG_CACHE_HOME")
            os.environ["XDG_CACHE_HOME"] = str(cache)
            try:
                import onnxruntime  # noqa: F401 - its import writes the device id
            finally:
                if before is None:
                    os.environ.pop("XDG_CACHE_HOME", None)
                else:
                    os.environ["XDG_CACHE_HOME"] = before
        return sys.modules["onnxruntime"]
