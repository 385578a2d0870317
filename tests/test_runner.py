"""The runner protocol against a real isolated environment (external/isolation-check): isolation, errors
that name the engine, the environment and the request, timeouts and interrupts that kill the whole
process group. (Warm workers themselves: tests/test_workers.py.)"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import idna
import psutil
import pytest
import six

from podforge import envs
from podforge.errors import EngineError
from podforge.runner import RunnerResponse, observe_runners, run_in_env
from podforge.workers import engine_workers


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("podforge-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PODFORGE_HOME", str(home))
        envs.build("isolation-check", log=lambda line: None)
        yield home


@pytest.fixture(autouse=True)
def pool():
    """Each test's workers are its own, and stopped when it ends."""
    with engine_workers() as pool:
        yield pool


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for_file(path: Path, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_runner_sees_its_own_pins_not_the_main_environment(home, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="podforge.runner")
    response = run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, tmp_path / "work")
    assert isinstance(response, RunnerResponse) and response.device == "cpu"
    assert (response.result["six"], response.result["idna"]) == ("1.15.0", "2.10")
    assert (six.__version__, idna.__version__) != ("1.15.0", "2.10")
    env_root = envs.env_dir("isolation-check")
    assert Path(response.result["six_file"]).is_relative_to(env_root)
    assert Path(response.result["prefix"]).resolve() == env_root.resolve()
    assert response.versions["six"] == "1.15.0" and response.versions["python"]
    assert response.worker_pid == response.result["pid"] and response.result["cwd"] == str(tmp_path / "work")
    assert "[isolation-check:iso] isolation-check: engine=iso mode=versions" in caplog.text


def test_ok_false_is_an_engine_error_naming_engine_and_environment(home, tmp_path):
    with pytest.raises(EngineError) as caught:
        run_in_env("isolation-check", "iso", {"mode": "fail"}, {"reason": "bad prompt"}, tmp_path)
    message = caught.value.message
    assert "engine 'iso' in environment 'isolation-check' failed: ValueError: asked to fail: bad prompt" in message
    assert 'request: {"reason": "bad prompt"}' in message
    assert "isolation-check: engine=iso mode=fail" in message  # the log tail
    assert caught.value.field == "engines.iso"


def test_a_crash_is_restarted_once_then_names_the_request_and_the_last_log_lines(home, tmp_path):
    with pytest.raises(EngineError) as caught:
        run_in_env("isolation-check", "iso", {"mode": "crash"}, {"text": "Line seven, said twice."}, tmp_path)
    message = caught.value.message
    assert "engine 'iso' in environment 'isolation-check' exited with code 3 while serving the request, again after a restart" in message
    assert 'request: {"text": "Line seven, said twice."}' in message
    assert "crash log line 29" in message and "crash log line 5\n" not in message  # only the tail
    attempts = (tmp_path / "requests.log").read_text().split()
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # two worker processes, one request each


def test_an_unbuilt_environment_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PODFORGE_HOME", str(tmp_path))
    with pytest.raises(EngineError, match="run `podforge envs build isolation-check`"):
        run_in_env("isolation-check", "iso", {}, {}, tmp_path)


def test_a_timeout_kills_the_whole_process_group(home, tmp_path):
    started = time.monotonic()
    with pytest.raises(EngineError, match="engine 'iso' in environment 'isolation-check' timed out after 3 s"):
        run_in_env("isolation-check", "iso", {"mode": "hang"}, {}, tmp_path, timeout_s=3)
    assert time.monotonic() - started < 15
    grandchild, runner = (int((tmp_path / f"{name}.pid").read_text()) for name in ("grandchild", "runner"))
    assert gone(grandchild) and gone(runner)


class Recorder:
    def __init__(self):
        self.computing_pids: list[int] = []
        self.responses: list[RunnerResponse] = []

    def runner_env(self) -> dict[str, str]:
        return {"PODFORGE_TEST_MARK": "seen"}

    @contextlib.contextmanager
    def computing(self, pid: int):
        self.computing_pids.append(pid)
        yield

    def runner_finished(self, response: RunnerResponse) -> None:
        self.responses.append(response)


def test_an_observer_learns_the_worker_pid_device_and_load_and_compute_seconds(home, tmp_path):
    recorder = Recorder()
    with engine_workers():
        with observe_runners(recorder):
            first = run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, tmp_path)
            second = run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, tmp_path)
        run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, tmp_path)  # outside: not observed
    assert recorder.responses == [first, second] and [r.device for r in recorder.responses] == ["cpu", "cpu"]
    assert recorder.computing_pids == [first.worker_pid, first.worker_pid]  # once per request, on one warm worker
    assert first.load_s > 0 and second.load_s == 0  # the second request found the model loaded
    assert first.compute_s > 0 and second.compute_s > 0
    assert gone(first.worker_pid)  # stopped when its scope ended


CHILD = textwrap.dedent(
    """
    import sys, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from podforge.runner import run_in_env

    workdir = Path(sys.argv[1])
    if sys.argv[2] == "main-thread":
        run_in_env("isolation-check", "iso", {"mode": "hang"}, {}, workdir)
    else:  # like a Prefect task in a worker thread, while the main thread is cancelled
        pool = ThreadPoolExecutor(1)
        pool.submit(run_in_env, "isolation-check", "iso", {"mode": "hang"}, {}, workdir)
        while not (workdir / "grandchild.pid").exists():
            time.sleep(0.05)
        raise SystemExit("cancelled")
    """
)


@pytest.mark.parametrize("how", ["main-thread", "worker-thread"])
def test_an_interrupted_or_cancelled_caller_kills_the_process_group(home, tmp_path, how):
    caller = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), how])
    try:
        grandchild = int(wait_for_file(tmp_path / "grandchild.pid"))
        runner = int((tmp_path / "runner.pid").read_text())
        if how == "main-thread":
            caller.send_signal(signal.SIGINT)  # Ctrl-C: KeyboardInterrupt in the waiting thread
        caller.wait(timeout=20)
    finally:
        caller.kill()
    assert gone(grandchild) and gone(runner)
