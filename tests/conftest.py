"""Test-wide setup: a private PODFORGE_HOME (cache, results, Prefect DB) for the whole session.

It is set before any podforge module is imported, because task result storage is fixed at import.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # A shell without job control (`make test &`, CI runners) starts the suite with Ctrl-C ignored, and every
    # process a test starts would inherit it: a Ctrl-C'd caller never stops, and Prefect's worker, which stops
    # on SIGTERM by sending itself SIGINT, never stops either. Back to Python's own handler, as in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ["PODFORGE_HOME"] = tempfile.mkdtemp(prefix="podforge-test-home-")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API on a temporary SQLite database, shared by the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def pytest_sessionfinish(session, exitstatus):
    """Engine environments and caches built by the tests can be gigabytes: leave nothing behind."""
    shutil.rmtree(os.environ["PODFORGE_HOME"], ignore_errors=True)
