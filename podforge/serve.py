"""``podforge serve``: a local Prefect server with Podforge's deployments and a worker, in one command.

It starts ``prefect server`` on loopback, creates the ``process`` work pool and the GPU concurrency
limits, deploys ``prefect.yaml``'s ``episode``, ``nightly`` and ``train-music`` deployments, starts a worker and prints
the UI's address. Ctrl-C (or SIGTERM) stops the worker and the server it started, each in its own
process group, so flow runs the worker spawned stop with it. Logs go to ``PODFORGE_HOME/logs``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import psutil

from podforge.config import REPO_ROOT, podforge_home
from podforge.errors import PodforgeError

DEFAULT_POOL = "podforge-local"
SERVER_STARTUP_TIMEOUT_S = 180.0  # migrations and the UI build take well over 20 s on 2 cores
STOP_GRACE_S = 15.0


class ServeError(PodforgeError):
    """The local server, its deployments or its worker could not be brought up."""


def serve_command(port: int = 4200, host: str = "127.0.0.1", timezone: str = "UTC") -> None:
    """Start a Prefect server with Podforge's deployments and a worker; Ctrl-C stops everything."""
    serve(host=host, port=port, timezone=timezone)


def serve(host: str = "127.0.0.1", port: int = 4200, pool: str = DEFAULT_POOL, timezone: str = "UTC") -> None:
    api_url = f"http://{host}:{port}/api"
    ensure_port_free(host, port)
    env = serve_environment(api_url)
    logs = podforge_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    group = ProcessGroup()
    stop_on_signals()
    try:
        say(f"starting the Prefect server on {host}:{port} (log: {logs / 'server.log'})")
        server = group.start("server", prefect_command("server", "start", "--host", host, "--port", str(port)), env, logs / "server.log")
        wait_until_healthy(api_url, server, logs / "server.log")
        create_work_pool_and_limits(api_url, pool)
        for name, options in (("episode", []), ("nightly", ["--timezone", timezone]), ("train-music", [])):
            say(f"deploying {name}")
            run_prefect(["--no-prompt", "deploy", "--name", name, "--pool", pool, *options], env, what=f"deploying {name}")
        say(f"starting a worker for pool {pool} (log: {logs / 'worker.log'})")
        group.start("worker", prefect_command("worker", "start", "--pool", pool, "--type", "process"), env, logs / "worker.log")
        say(f"Prefect UI: http://{host}:{port}  (deployments: episode, nightly, train-music; Ctrl-C stops everything)")
        group.wait_for_any_exit()
        raise ServeError(f"the Prefect {group.exited_name()} stopped unexpectedly; see {logs}")
    except Stopped:
        say("stopping")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        group.stop_all()


def serve_environment(api_url: str) -> dict[str, str]:
    """The environment of every process ``serve`` starts: one project-local Prefect home, no analytics."""
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_HOME": env.get("PREFECT_HOME", str(podforge_home() / "prefect")),
            "PODFORGE_HOME": str(podforge_home()),
            "PREFECT_API_URL": api_url,
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def prefect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def run_prefect(args: list[str], env: dict[str, str], *, what: str) -> None:
    completed = subprocess.run(prefect_command(*args), env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-10:])
        raise ServeError(f"failed while {what} (exit {completed.returncode}):\n{tail}")


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((host, port)) == 0:
            raise ServeError(f"{host}:{port} is already in use; pick another port with --port", field="port")


def wait_until_healthy(api_url: str, server: subprocess.Popen, log: Path, timeout_s: float = SERVER_STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServeError(f"the Prefect server exited with code {server.returncode} while starting; see {log}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise ServeError(f"the Prefect server did not answer {api_url}/health within {timeout_s:.0f} s; see {log}")


def create_work_pool_and_limits(api_url: str, pool: str) -> None:
    """The ``process`` work pool (with the worker's default job template) and one limit per GPU."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    from podforge.gpu import ensure_gpu_limits, list_gpus

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()),
                overwrite=True,
            )
        limits = ensure_gpu_limits(list_gpus())
    say(f"work pool {pool} ready; GPU limits: " + (", ".join(f"{name}={slots}" for name, slots in limits.items()) or "none (no NVIDIA GPU seen)"))


class Stopped(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


def stop_on_signals() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class ProcessGroup:
    """Child processes, each the leader of its own process group, stopped together."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as log_file:
            process = subprocess.Popen(
                command, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = process
        return process

    def wait_for_any_exit(self, poll_s: float = 0.5) -> None:
        while all(process.poll() is None for process in self.processes.values()):
            time.sleep(poll_s)

    def exited_name(self) -> str:
        return next((name for name, process in self.processes.items() if process.poll() is not None), "?")

    def stop_all(self) -> None:
        """SIGTERM to each group and to every descendant (flow runs may have their own sessions), then SIGKILL."""
        leaders = [psutil.Process(process.pid) for process in self.processes.values() if process.poll() is None]
        descendants = [child for leader in leaders for child in _children(leader)]
        for leader in reversed(leaders):
            _signal_group(leader.pid, signal.SIGTERM)
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs([*leaders, *descendants], timeout=STOP_GRACE_S)
        for process in alive:
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
        for process in self.processes.values():
            process.wait(timeout=5)


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    """Signal a process group led by one of our children (no-op once it is gone or is not a group leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pgid) == pgid:
            os.killpg(pgid, signum)


def say(message: str) -> None:
    print(f"podforge serve: {message}", flush=True)


if __name__ == "__main__":
    import typer

    typer.run(serve_command)
