"""Helpers for the tests that run ``podforge serve``: start it, talk to its API, hold a run mid-step.

Every wait polls a state with a generous deadline (the CI box has 2 busy cores); nothing is timed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import imageio_ffmpeg
import pytest

REPO = Path(__file__).resolve().parent.parent
SERVE_STARTUP_TIMEOUT_S = 600
RUN_TIMEOUT_S = 600
OWNER_EMAIL = "studio@example.org"
FAST = "mix: {intro_s: 0.5, outro_s: 0.5}\nvideo: {width: 320, height: 180, fps: 10}\n"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = RUN_TIMEOUT_S, every_s: float = 1.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class Served:
    """A running ``podforge serve`` and what the tests need to reach it."""

    process: subprocess.Popen
    home: Path
    port: int
    files_port: int
    out: Path
    config: Path
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns serve's exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=180)
        if self.reader:
            self.reader.join(timeout=30)
        return code


def start_serve(home: Path, *options: str, env: dict[str, str] | None = None) -> Served:
    """``python -m podforge serve`` on free ports, its output folder and a fast config under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    port, files_port = free_port(), free_port()
    config = home / "serve.yaml"
    config.write_text(FAST + f'publish: {{base_url: "http://127.0.0.1:{files_port}/", owner_email: {OWNER_EMAIL}}}\n', encoding="utf-8")
    out = home / "output"
    process_env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    process_env.update(PODFORGE_HOME=str(home), PREFECT_WORKER_QUERY_SECONDS="2", **(env or {}))
    command = [sys.executable, "-m", "podforge", "serve", "--port", str(port), "--out", str(out), "--config", str(config), *options]
    process = subprocess.Popen(command, cwd=REPO, env=process_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(process=process, home=home, port=port, files_port=files_port, out=out, config=config)
    ready = threading.Event()

    def follow_output() -> None:
        for line in process.stdout:
            served.output.append(line.rstrip())
            if "Prefect UI:" in line:
                ready.set()

    served.reader = threading.Thread(target=follow_output, daemon=True)
    served.reader.start()
    started = time.monotonic()
    while not ready.wait(1) and process.poll() is None and time.monotonic() - started < SERVE_STARTUP_TIMEOUT_S:
        pass
    if not ready.is_set():
        process.kill()
        pytest.fail("podforge serve did not come up:\n" + "\n".join(served.output[-30:]))
    print(f"podforge serve ready in {time.monotonic() - started:.0f} s")
    return served


@contextlib.contextmanager
def prefect_client(served: Served) -> Iterator:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: served.api_url}), get_client(sync_client=True) as client:
        yield client


def create_run(served: Served, deployment: str, parameters: dict, **options):
    """A flow run of ``deployment`` created through the API, as the UI's Run button does."""
    with prefect_client(served) as client:
        found = client.read_deployment_by_name(deployment)
        return client.create_flow_run_from_deployment(found.id, parameters=parameters, **options)


def flow_run(served: Served, run_id):
    with prefect_client(served) as client:
        return client.read_flow_run(run_id)


def task_run_states(served: Served, run_id) -> list[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with prefect_client(served) as client:
        return [task.state_type.value for task in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))]


def wait_until_final(served: Served, run_id, timeout_s: float = RUN_TIMEOUT_S):
    return wait_for(lambda: (run := flow_run(served, run_id)).state.is_final() and run, f"flow run {run_id} to end", timeout_s)


def stuck_encoder(folder: Path) -> tuple[Path, Path]:
    """A config whose ffmpeg waits while a hold file exists: a run using it stays mid-step until released.

    It stands in for an encoder that hangs; what the tests check is what happens *around* a step that
    is running (stopping serve, a second run going on meanwhile), not ffmpeg. Returns (config, hold file).
    """
    hold = folder / "hold"
    hold.touch()
    wrapper = folder / "stuck-ffmpeg.sh"
    wrapper.write_text(f'#!/bin/sh\nwhile [ -e "{hold}" ]; do sleep 1; done\nexec "{imageio_ffmpeg.get_ffmpeg_exe()}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    config = folder / "stuck.yaml"
    config.write_text(f'ffmpeg: "{wrapper}"\nvideo: {{encoder: libx264}}\n', encoding="utf-8")  # libx264: no encoder probe before the steps
    return config, hold
