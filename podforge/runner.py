"""The task's side of the runner protocol (see ``external/README.md``): :func:`run_in_env`.

An engine calls ``run_in_env(env, engine, settings, request, workdir)``; the request is served by the warm
worker for ``(env, engine, settings, device)`` of the current pool (:mod:`podforge.workers`), started on
first use, whose output streams line by line into the Prefect log of the task whose request is running.
A timeout, a crash that repeats after one restart, or ``{"ok": false}`` becomes an :class:`EngineError`
naming the engine, the environment, the request and the last log lines, so Prefect's task retries apply.

A step that needs to know about the runners it uses (GPU slots and telemetry, load and compute seconds)
registers an observer with :func:`observe_runners`; observers stack.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ContextManager, Protocol

from pydantic import BaseModel, Field

from podforge import envs
from podforge.errors import EngineError
from podforge.workers import RunnerResponse, WorkerSpec, current_pool, memory_limit_mb

SUMMARY_CHARS = 160


class RunnerObserver(Protocol):
    """Told about the runner work of a step; may add variables to its runners' environment."""

    def runner_env(self) -> dict[str, str]:
        """Variables for the runner process (part of the worker's identity, e.g. the GPU it sees)."""
        ...

    def computing(self, pid: int) -> ContextManager[None]:
        """Entered around the compute of one request (or the batch it leads) by worker ``pid``."""
        ...

    def runner_finished(self, response: RunnerResponse) -> None: ...


_observers: contextvars.ContextVar[tuple[RunnerObserver, ...]] = contextvars.ContextVar("podforge_runner_observers", default=())


@contextlib.contextmanager
def observe_runners(observer: RunnerObserver) -> Iterator[None]:
    token = _observers.set((*_observers.get(), observer))
    try:
        yield
    finally:
        _observers.reset(token)


class ObservedCompute:
    """The compute hooks of every observer of a request, entered together."""

    def __init__(self, observers: Sequence[RunnerObserver]):
        self.observers = observers

    @contextlib.contextmanager
    def computing(self, pid: int) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for observer in self.observers:
                stack.enter_context(observer.computing(pid))
            yield


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


def run_in_env(
    env: str,
    engine: str,
    settings: dict[str, Any],
    request: dict[str, Any],
    workdir: Path,
    *,
    timeout_s: float = 3600,
    memory_gb: float | None = None,
    runner_file: str = "runner.py",
) -> RunnerResponse:
    """Serve ``request`` with ``engine`` in environment ``env``; the runner writes its files into ``workdir``.

    ``timeout_s`` bounds the model load and the request's compute (not its wait in the queue).
    ``memory_gb`` is the engine's estimate of one worker's peak memory: a CPU worker runs under that
    limit (default: half of this machine's memory; see :func:`podforge.workers.memory_limit_mb`).
    ``runner_file`` names another runner of the same environment (``train_runner.py``).
    """
    python = envs.python_for(env)
    runner = envs.EXTERNAL_DIR / env / runner_file
    if not runner.is_file():
        raise EngineError(f"environment {env!r} has no runner: {runner} is missing", field=f"engines.{engine}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    observers = _observers.get()
    device = "cpu" if settings.get("device") == "cpu" else "cuda"
    spec = WorkerSpec(
        env=env,
        engine=engine,
        command=(str(python), str(runner)),
        settings=json.dumps(settings, sort_keys=True, default=str),
        environment=tuple(sorted(runner_environment(python, observers).items())),
        device=device,
        memory_limit_mb=memory_limit_mb(memory_gb, device),
    )
    response = current_pool().run(
        spec, request, workdir, summary=summarize(request), timeout_s=timeout_s, logger=step_logger(), hooks=ObservedCompute(observers) if observers else None
    )
    for observer in observers:
        observer.runner_finished(response)
    return response


def summarize(request: dict[str, Any]) -> str:
    """The request as one short line of JSON (what an error names as "the request")."""
    text = json.dumps(request, default=str, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


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


def runner_environment(python: Path, observers: Sequence[RunnerObserver] | None = None) -> dict[str, str]:
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
    for observer in observers or ():
        environment.update(observer.runner_env())
    return environment
