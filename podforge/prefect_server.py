"""The Prefect servers Podforge starts: one start-up at a time per database, and none outlives its starter.

Prefect migrates its database (and registers block types) while a server starts, in the start-up half of
the app's lifespan; ``prefect server start`` and Prefect's temporary server (``SubprocessASGIServer``, a
``python -m uvicorn --factory prefect.server.api.server:create_app`` child) both do. Two servers starting
at once on an empty database both run the same migrations: one fails with "duplicate column name" and a
long traceback. Every server Podforge starts — the temporary one behind ``podforge run`` and the one
``podforge serve`` runs — is built by :func:`create_app` here instead, which holds an exclusive file lock
next to the database (``PREFECT_HOME/server-startup.lock``) around that start-up half. The first server
migrates; the others wait, then find the database current. (The lock is per machine: servers on several
machines sharing one PostgreSQL database should be started one at a time after a Prefect upgrade.)

Each server runs behind :mod:`podforge.lifeline`, so the kernel stops it when the process that started it
dies, even by SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from podforge.config import podforge_home
from podforge.errors import PodforgeError
from podforge.lifeline import lifeline_command

if TYPE_CHECKING:
    from fastapi import FastAPI

STARTUP_LOCK_FILE = "server-startup.lock"
STARTUP_TIMEOUT_S = 600.0  # imports, migrations and waiting for another start-up take minutes on 2 busy cores
STOP_TIMEOUT_S = 15.0
UVICORN_ADDRESS_IN_USE = 3  # uvicorn's exit code when it cannot bind


class PrefectServerError(PodforgeError):
    """A Prefect server that Podforge started did not come up."""


def prefect_home() -> Path:
    """Where Prefect keeps its SQLite database: ``PREFECT_HOME``, else ``PODFORGE_HOME/prefect``."""
    return Path(os.environ.get("PREFECT_HOME") or podforge_home() / "prefect")


@contextlib.contextmanager
def startup_lock(home: Path) -> Iterator[None]:
    """Exclusive, blocking lock on ``home/server-startup.lock``; the kernel drops it if the holder dies."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / STARTUP_LOCK_FILE, "a+b") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"podforge: waiting for another Prefect server to finish starting on {home}", file=sys.stderr, flush=True)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def create_app() -> FastAPI:
    """Prefect's server app, whose start-up (migrations, block registration) holds the start-up lock.

    The uvicorn factory of every server Podforge starts; Prefect reads its settings (database URL, UI,
    ephemeral mode) from the environment, as for ``prefect server start``.
    """
    from prefect.server.api.server import create_app as create_prefect_app

    import podforge.notifications  # noqa: F401  - the server loads the failure-log block to send notifications

    app = create_prefect_app()
    prefect_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def locked_startup(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            with startup_lock(prefect_home()):  # blocks the loop while waiting: nothing else runs yet
                await stack.enter_async_context(prefect_lifespan(app))
            yield

    app.router.lifespan_context = locked_startup
    return app


def server_command(host: str, port: int, *, log_level: str = "warning") -> list[str]:
    """The command that runs :func:`create_app` on ``host:port``, stopped when this process dies."""
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "podforge.prefect_server:create_app", "--host", host, "--port", str(port)]
    options = ["--lifespan", "on", "--log-level", log_level, "--timeout-graceful-shutdown", str(int(STOP_TIMEOUT_S))]
    return lifeline_command([*uvicorn, *options])


def server_environment(*, ephemeral: bool, database_url: str | None = None, address: tuple[str, int] | None = None, register_blocks: bool = True) -> dict[str, str]:
    """The server's environment: this one, Prefect's home, analytics off; the UI only for a full server.

    ``address`` (host, port) is where a full server listens: its UI calls the API there, and
    notifications link runs there (``{{ flow_run|ui_url }}``). ``register_blocks=False`` skips Prefect's
    block-type registration at start-up, and with it the import of every installed Prefect collection
    (prefect-kubernetes alone takes 1.4 s): ``podforge run`` uses no blocks, ``podforge serve`` registers them.
    """
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # the server is the API; a client URL here would only confuse it
    env.update(
        {
            "PREFECT_HOME": str(prefect_home()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "false" if ephemeral else "true",
            "PREFECT__SERVER_FINAL": "1",
        }
    )
    if ephemeral:
        env["PREFECT__SERVER_EPHEMERAL"] = "1"  # Prefect's own temporary-server mode: fewer background services
    if not register_blocks:
        env.update(PREFECT_API_BLOCKS_REGISTER_ON_START="false", PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION="false")
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    if address:
        host, port = address
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        env.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port))
        env.setdefault("PREFECT_UI_URL", url)  # set them yourself when browsers reach the server by another name
        env.setdefault("PREFECT_UI_API_URL", f"{url}/api")
    return env


def wait_until_healthy(api_url: str, process: subprocess.Popen, log: Path | None, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Return once ``api_url/health`` answers; fail with one line if the server exits or never answers."""
    where = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrefectServerError(f"the Prefect server exited with code {process.returncode} while starting{where}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise PrefectServerError(f"the Prefect server did not answer {api_url}/health within {timeout_s:.0f} s{where}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class TemporaryServer:
    """A Prefect server on a free loopback port for one process (``podforge run``); stopped at exit."""

    def __init__(self, log: Path | None = None, *, register_blocks: bool = True):
        self.log = log
        self.register_blocks = register_blocks
        self.process: subprocess.Popen | None = None
        self.api_url = ""

    def launch(self) -> None:
        """Start the server process on a free port without waiting for it (:meth:`start` waits)."""
        if not self.process:
            atexit.register(self.stop)  # also when the caller never reaches its own clean-up
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        output = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(server_command("127.0.0.1", port), env=server_environment(ephemeral=True, register_blocks=self.register_blocks), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        finally:
            if self.log:
                output.close()

    def start(self, attempts: int = 3) -> str:
        """Start the server (unless :meth:`launch` already did) and wait until it answers; returns its API URL."""
        for _ in range(attempts):
            if self.process is None:
                self.launch()
            assert self.process is not None
            try:
                wait_until_healthy(self.api_url, self.process, self.log)
                return self.api_url
            except PrefectServerError:
                if self.process.poll() != UVICORN_ADDRESS_IN_USE:  # another process took the port: try another
                    self.stop()
                    raise
                self.process = None
        raise PrefectServerError(f"no free port for the temporary Prefect server after {attempts} attempts")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def launch_early() -> TemporaryServer | None:
    """``podforge run``'s temporary server, started before the CLI imports Prefect and checks the script,
    so that its start-up overlaps them; :func:`prefect_api` waits for it.

    None where no temporary server will be needed (``PREFECT_API_URL`` set, in the environment or the
    active Prefect profile, read without importing Prefect) or where its database does not exist yet: a
    run that stops at once on bad input must not leave a first migration half done.
    """
    if configured_api_url() or not (prefect_home() / "prefect.db").is_file():
        return None
    server = TemporaryServer(log=_temporary_server_log(), register_blocks=False)  # a run's own server: no blocks used
    server.launch()
    return server


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment, else from the active profile in ``profiles.toml``."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml")
    try:
        document = tomllib.loads(profiles.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or document.get("active", "ephemeral")
    return document.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")


def _temporary_server_log() -> Path:
    logs = podforge_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / "temporary-server.log"


@contextlib.contextmanager
def prefect_api(early: TemporaryServer | None = None) -> Iterator[str]:
    """Point Prefect at its configured API (``PREFECT_API_URL``, from the environment or a profile), else at
    a :class:`TemporaryServer` for this block (``early``, when :func:`launch_early` started one).

    Flow runs on a temporary server send no heartbeats: they exist so that a server which outlives a
    crashed run can tell (an automation on missing heartbeats), and this server dies with the run. Prefect
    joins its heartbeat thread, which sleeps in whole seconds, as each flow run ends: up to 1 s per run.

    Must be entered from the main thread (see :mod:`podforge.lifeline`).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        if early is not None:
            early.stop()
        yield configured
        return
    server = early or TemporaryServer(log=_temporary_server_log())
    try:
        api_url = server.start()
        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            try:
                yield api_url
            finally:
                drain_prefect_clients()
    finally:
        server.stop()


def drain_prefect_clients(timeout_s: float = 30.0) -> None:
    """Send the logs and events still queued in this process before their server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)
