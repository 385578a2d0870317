"""Prefect settings for running offline: set before Prefect is imported.

By default flows run against Prefect's temporary local API (SQLite under ``PODFORGE_HOME/prefect``) with
analytics off. When ``PREFECT_API_URL`` is set (a running ``prefect server`` or ``podforge serve``), it is
used as it is. Values already in the environment always win.
"""

from __future__ import annotations

import os

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
