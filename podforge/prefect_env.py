"""How Prefect runs here: settings for running offline (set before Prefect is imported) and the task runner.

By default ``podforge run`` starts a temporary local server of its own (SQLite under
``PODFORGE_HOME/prefect``, see :mod:`podforge.prefect_server`) with analytics off. When ``PREFECT_API_URL``
is set (a running ``prefect server`` or ``podforge serve``), it is used as it is. Values already in the
environment always win.
"""

from __future__ import annotations

import os

import psutil

from podforge.config import podforge_home

OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
    # The temporary server needs more than its 20 s default to start on a 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_UI_ENABLED": "false",
}


def configure_prefect_environment(*, quiet: bool = True) -> None:
    """Set the offline defaults in ``os.environ`` (nothing is written to disk)."""
    os.environ.setdefault("PREFECT_HOME", str(podforge_home() / "prefect"))
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def ensure_prefect_home() -> None:
    """Create ``PREFECT_HOME``: Prefect's SQLite database cannot create its own folder."""
    os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)


TASK_MEMORY_GB = 1.0
"""What one running task may hold (a Piper run, an ffmpeg graph, a frame pipeline): sizes the default."""


def default_max_workers() -> int:
    """Tasks at once: two per core (tasks mostly wait on ffmpeg and engine processes), fewer when memory is short."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    by_memory = int(psutil.virtual_memory().available / 2**30 / TASK_MEMORY_GB)
    return max(2, min(2 * cores, by_memory, 16))


def episode_task_runner(max_workers: int | None = None):
    """Prefect's thread pool, bounded (its default is unbounded: a 100-line script would start 100 tasks at once)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_workers or default_max_workers())
