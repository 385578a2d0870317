"""The task's side of the runner protocol (see ``external/README.md``).

:func:`run_in_env` starts ``external/<env>/runner.py`` with the environment's interpreter, in a process
group of its own, hands it a JSON request and reads its JSON response. Its output streams line by line
into the Prefect run log. A timeout, an interrupt or a cancelled flow kills the whole group (the runner and
anything it started); a crash, a missing response or ``{"ok": false}`` becomes an :class:`EngineError`
naming the engine, the environment and the last log lines, so Prefect's task retries apply.

A step that needs to know about its runner (GPU telemetry watches its pid) registers an observer with
:func:`observe_runners`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from podforge import envs
from podforge.errors import EngineError

LOG_TAIL_LINES = 20
KILL_GRACE_S = 3.0


class RunnerResponse(BaseModel):
    result: dict[str, Any]
    device: str
    versions: dict[str, str] = Field(default_factory=dict)


class RunnerObserver(Protocol):
    """Told about each runner a step starts (telemetry), and may add variables to its environment."""

    def runner_env(self) -> dict[str, str]: ...

    def runner_started(self, pid: int) -> None: ...

    def runner_finished(self, response: RunnerResponse) -> None: ...


_observer: contextvars.ContextVar[RunnerObserver | None] = contextvars.ContextVar("podforge_runner_observer", default=None)
_live_groups: set[int] = set()
_live_groups_lock = threading.Lock()


@contextlib.contextmanager
def observe_runners(observer: RunnerObserver) -> Iterator[None]:
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def step_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task run, else a plain ``podforge.runner`` logger."""
    if "prefect.context" not in sys.modules:  # Prefect not even loaded: certainly not in a run (and importing it writes PREFECT_HOME)
        return logging.getLogger("podforge.runner")
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("podforge.runner")


def run_in_env(env: str, engine: str, settings: dict[str, Any], request: dict[str, Any], workdir: Path, *, timeout_s: float = 3600) -> RunnerResponse:
    """Run ``engine`` in environment ``env`` on ``request``; the runner writes its files into ``workdir``."""
    python = envs.python_for(env)
    runner = envs.EXTERNAL_DIR / env / "runner.py"
    if not runner.is_file():
        raise EngineError(f"environment {env!r} has no runner: {runner} is missing", field=f"engines.{engine}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    observer = _observer.get()
    logger = step_logger()
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    with tempfile.TemporaryDirectory(prefix="podforge-runner-") as exchange:
        request_path, response_path = Path(exchange) / "request.json", Path(exchange) / "response.json"
        message = {"engine": engine, "settings": settings, "request": request, "workdir": str(workdir)}
        request_path.write_text(json.dumps(message, default=str), encoding="utf-8")
        process = subprocess.Popen(
            [str(python), str(runner), str(request_path), str(response_path)],
            cwd=workdir,
            env=runner_environment(python, observer),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with _live_groups_lock:
            _live_groups.add(process.pid)
        readers = [_stream(pipe, f"[{env}:{engine}] ", logger, tail) for pipe in (process.stdout, process.stderr)]
        try:
            if observer is not None:
                observer.runner_started(process.pid)
            try:
                returncode = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                kill_group(process)
                _join(readers)
                raise EngineError(failure(engine, env, f"timed out after {timeout_s:g} s; its process group was killed", tail), field=f"engines.{engine}") from None
        finally:
            kill_group(process)
            with _live_groups_lock:
                _live_groups.discard(process.pid)
            _join(readers)
        response = read_response(response_path, returncode, engine, env, tail)
    if observer is not None:
        observer.runner_finished(response)
    return response


class EnvCommand(BaseModel):
    """How a command line run with an environment's interpreter went (``podforge envs doctor``'s checks)."""

    ok: bool
    returncode: int | None = Field(description="None: it could not start, or ran past its time")
    stdout: str = ""
    tail: str = Field(description="the last lines of its output (stdout and stderr), or why it did not run")


def run_env_python(env: str, args: list[str], *, timeout_s: float = 240.0) -> EnvCommand:
    """``python ARGS`` with environment ``env``'s interpreter and a runner's variables (its bin first on
    PATH, ``_common`` importable); an EngineError when the environment is not built."""
    python = envs.python_for(env)
    try:
        done = subprocess.run(
            [str(python), *args], capture_output=True, text=True, errors="replace", timeout=timeout_s,
            env=runner_environment(python, None), stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired:
        return EnvCommand(ok=False, returncode=None, tail=f"did not finish within {timeout_s:g} s")
    except OSError as exc:
        return EnvCommand(ok=False, returncode=None, tail=str(exc))
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])[-1500:]
    return EnvCommand(ok=done.returncode == 0, returncode=done.returncode, stdout=done.stdout, tail=tail)


def runner_environment(python: Path, observer: RunnerObserver | None) -> dict[str, str]:
    """The runner's variables: the environment's bin first, ``_common`` importable, nothing of ours leaking."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env_root = python.parent.parent
    environment.update(
        PYTHONPATH=str(envs.COMMON_DIR),
        PYTHONUNBUFFERED="1",
        PYTHONNOUSERSITE="1",
        VIRTUAL_ENV=str(env_root),
        PATH=os.pathsep.join([str(python.parent), environment.get("PATH", "")]),
    )
    if observer is not None:
        environment.update(observer.runner_env())
    return environment


def read_response(path: Path, returncode: int, engine: str, env: str, tail: deque[str]) -> RunnerResponse:
    if returncode != 0:
        how = f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exited with code {returncode}"
        raise EngineError(failure(engine, env, how, tail), field=f"engines.{engine}")
    if not path.is_file():
        raise EngineError(failure(engine, env, "finished without writing a response", tail), field=f"engines.{engine}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EngineError(failure(engine, env, f"wrote a response that is not JSON ({exc})", tail), field=f"engines.{engine}") from None
    if not payload.get("ok"):
        reason = f"failed: {payload.get('error_type', 'Error')}: {payload.get('error', 'no message')}"
        raise EngineError(failure(engine, env, reason, tail), field=f"engines.{engine}")
    try:
        return RunnerResponse.model_validate(payload)
    except ValidationError as exc:
        raise EngineError(failure(engine, env, f"wrote a malformed response ({exc.errors()[0]['msg']})", tail), field=f"engines.{engine}") from None


def failure(engine: str, env: str, what: str, tail: deque[str]) -> str:
    lines = "\n".join(f"  {line}" for line in tail) or "  (no output)"
    return f"engine {engine!r} in environment {env!r} {what}; last log lines:\n{lines}"


def kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the runner's process group, SIGKILL what is left after a grace period, reap the runner."""
    group = process.pid
    if not _signal_group(group, signal.SIGTERM):
        process.wait()
        return
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline and _group_alive(group, process):
        time.sleep(0.05)
    _signal_group(group, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def _group_alive(group: int, process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader so a finished runner does not keep the group alive as a zombie
    return _signal_group(group, 0)


def kill_live_runners() -> None:
    """Kill every runner group still running (interpreter shutdown after a cancelled flow)."""
    with _live_groups_lock:
        groups = list(_live_groups)
    for group in groups:
        _signal_group(group, signal.SIGKILL)


def _stream(pipe: IO[bytes] | None, prefix: str, logger: logging.Logger | logging.LoggerAdapter, tail: deque[str]) -> threading.Thread:
    def pump() -> None:
        assert pipe is not None
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    tail.append(line)
                    logger.info("%s%s", prefix, line)

    thread = threading.Thread(target=pump, name=f"runner-log-{prefix.strip()}", daemon=True)
    thread.start()
    return thread


def _join(readers: list[threading.Thread]) -> None:
    for reader in readers:
        reader.join(timeout=5)


# A cancelled Prefect flow raises in the main thread while the runner waits in a worker thread, and the
# interpreter then joins that worker before `atexit` runs; threading's own exit hooks run before the join.
_register_thread_exit = getattr(threading, "_register_atexit", None)
if _register_thread_exit is not None:
    _register_thread_exit(kill_live_runners)
