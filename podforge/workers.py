"""Warm engine workers: one long-lived runner process per (environment, engine, settings, device).

A :class:`WorkerPool` starts a worker on first use (``python external/<env>/runner.py --fds R W``, in
a process group of its own, from one long-lived spawner thread). The worker loads its model once and
then answers every request for that spec over two dedicated pipes, one JSON line each way; its
stdout/stderr stream, line by line, into the log of the task whose request is running (the runner
writes marker lines around each request, see ``external/_common/podforge_runner.py``).

* **Serialised:** the requests to one worker queue; one thread at a time (the *leader*) talks to it. A
  runner that defines ``handle_batch`` gets the requests that queued while it was busy as one batch
  (up to its ``max_batch``); a batch that fails is re-run request by request, so a bad request fails alone.
* **Slots only while computing:** around each request or batch the pool holds a CPU compute slot
  (CPU workers; :func:`default_cpu_slots`) and enters the leading request's hooks (a GPU step holds its
  GPU slots and samples NVML there). Starting and loading happen outside: ``load_s`` and ``compute_s``
  come back separately in each :class:`RunnerResponse`.
* **Restart once:** a worker that dies mid-request is restarted and the request sent again; a second
  death fails the request with the engine, the request and the log tail named. A timeout kills the
  worker's group and fails the request without a retry (it would hang again).
* **Nothing orphaned:** :func:`engine_workers` scopes a pool to a flow run and stops its workers on exit;
  every pool of the process is also stopped when the interpreter exits (before it joins task threads)
  and, from the worker's side, when this process dies (pipe EOF, ``PR_SET_PDEATHSIG``, a watchdog).
  Outside :func:`engine_workers` (direct engine calls, Ray or Dask worker processes) each process has a
  default pool whose idle workers stop after ``PODFORGE_WORKER_IDLE_S`` (600 s).
* **Memory guard:** a CPU worker runs under ``RLIMIT_DATA`` (:func:`memory_limit_mb`), so a request that
  needs more memory than the engine's estimate fails alone with an allocation error, not the OOM killer.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import itertools
import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ContextManager, ParamSpec, Protocol, TypeVar

import psutil
from pydantic import BaseModel, Field, ValidationError

from podforge.errors import EngineError

LOG_TAIL_LINES = 20
KILL_GRACE_S = 3.0
LOG_SYNC_S = 5.0
"""How long a finished request waits for its last log lines (the end markers) to be read."""
MAX_RESTARTS = 1
MARK = "\x1epodforge:"
PARENT_PID_VARIABLE = "PODFORGE_PARENT_PID"
P = ParamSpec("P")
R = TypeVar("R")
MEMORY_LIMIT_VARIABLE = "PODFORGE_MEMORY_LIMIT_MB"
IDLE_VARIABLE = "PODFORGE_WORKER_IDLE_S"
DEFAULT_IDLE_S = 600.0
DEFAULT_MEMORY_SHARE = 0.5
"""Without an engine's estimate, a CPU worker may use up to this share of the machine's memory."""
GIB = 1024**3

idle_log = logging.getLogger("podforge.workers")


class RunnerResponse(BaseModel):
    """A runner's answer to one request, and what it cost."""

    result: dict[str, Any]
    device: str
    versions: dict[str, str] = Field(default_factory=dict)
    worker_pid: int | None = Field(default=None, description="the runner process that answered (as it reported itself)")
    load_s: float = Field(default=0.0, description="model load this request waited for (0 on a warm worker)")
    compute_s: float = Field(default=0.0, description="the runner's handling time (its share of a batch)")
    batch_size: int = Field(default=1, description="how many requests the runner handled together")


class ComputeHooks(Protocol):
    """Entered around the compute of a request (not its queueing or the worker's load)."""

    def computing(self, pid: int) -> ContextManager[None]: ...


@dataclass(frozen=True)
class WorkerSpec:
    """What identifies a worker: requests with the same spec are served by the same warm process."""

    env: str
    engine: str
    command: tuple[str, ...]
    settings: str
    """The engine settings as canonical JSON (what ``load`` gets)."""
    environment: tuple[tuple[str, str], ...] = field(repr=False)
    device: str
    """The device asked for (``cuda`` or ``cpu``); the runner's own reports override it once it answers."""
    memory_limit_mb: int | None = None

    @property
    def label(self) -> str:
        return f"{self.env}:{self.engine}"


@dataclass(eq=False)
class Job:
    """One request waiting for, or being served by, a worker."""

    request: dict[str, Any]
    workdir: Path
    summary: str
    timeout_s: float
    logger: logging.Logger | logging.LoggerAdapter
    hooks: ComputeHooks | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    load_s: float = 0.0
    restarts: int = 0
    response: RunnerResponse | None = None
    error: EngineError | None = None
    done: bool = False

    def message(self) -> dict[str, Any]:
        return {"request": self.request, "workdir": str(self.workdir)}


class WorkerDied(Exception):
    """The worker process ended while a request was in flight."""

    def __init__(self, how: str):
        super().__init__(how)
        self.how = how


class RequestTimedOut(Exception):
    pass


def failure(spec: WorkerSpec, what: str, job: Job | None, tail: deque[str] | None = None) -> EngineError:
    """An :class:`EngineError` naming the engine, the environment, the request and the last log lines."""
    lines = "\n".join(f"  {line}" for line in (tail if tail is not None else job.tail if job else ())) or "  (no output)"
    request = f"; request: {job.summary}" if job is not None else ""
    return EngineError(f"engine {spec.engine!r} in environment {spec.env!r} {what}{request}; last log lines:\n{lines}", field=f"engines.{spec.engine}")


def exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


# --- processes ------------------------------------------------------------------------------------------


class Spawner:
    """Starts worker processes from one long-lived thread.

    ``PR_SET_PDEATHSIG`` (set by the worker) fires when the *thread* that started it exits, so workers
    must not be started from short-lived task threads.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[dict[str, Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, **options: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="podforge-worker-spawner", daemon=True)
                self._thread.start()
        started: Future = Future()
        self._requests.put((options, started))
        return started.result()

    def _serve(self) -> None:
        while True:
            options, started = self._requests.get()
            try:
                started.set_result(subprocess.Popen(**options))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                started.set_exception(exc)


_spawner = Spawner()


def kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL what is left after a grace period, reap the leader."""
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
    process.poll()  # reap the leader so a finished worker does not keep its group alive as a zombie
    return _signal_group(group, 0)


class RunnerProcess:
    """One running worker: its pipes, its log readers (with their routing) and its replies."""

    def __init__(self, spec: WorkerSpec, starter: Job):
        self.spec = spec
        self.prefix = f"[{spec.label}] "
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._cond = threading.Condition()
        self._routes: dict[str, list[Job]] = {"stdout": [starter], "stderr": [starter]}
        self._ended: dict[str, str | None] = {"stdout": None, "stderr": None}
        self._eof: dict[str, bool] = {"stdout": False, "stderr": False}
        self._jobs_by_tag: dict[str, list[Job]] = {"load": [starter]}
        requests_read, self._requests_write = os.pipe()
        self._replies_read, replies_write = os.pipe()
        environment = dict(spec.environment)
        environment[PARENT_PID_VARIABLE] = str(os.getpid())
        if spec.memory_limit_mb:
            environment[MEMORY_LIMIT_VARIABLE] = str(spec.memory_limit_mb)
        try:
            self.popen = _spawner.popen(
                args=[*spec.command, "--fds", str(requests_read), str(replies_write)],
                cwd=Path(spec.command[0]).parent.parent,  # the environment; each request runs in its workdir
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(requests_read, replies_write),
                start_new_session=True,
            )
        except BaseException:
            os.close(self._requests_write)
            os.close(self._replies_read)
            raise
        finally:
            os.close(requests_read)
            os.close(replies_write)
        self.requests: IO[str] = os.fdopen(self._requests_write, "w", encoding="utf-8", buffering=1)
        self._readers = [
            self._thread(self._read_replies, "replies"),
            self._thread(self._pump, "stdout", self.popen.stdout),
            self._thread(self._pump, "stderr", self.popen.stderr),
        ]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _thread(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"podforge-worker-{self.popen.pid}-{args[0]}", daemon=True)
        thread.start()
        return thread

    def _read_replies(self, _name: str) -> None:
        with os.fdopen(self._replies_read, "rb") as pipe:
            for line in pipe:
                if line.strip():
                    try:
                        self.replies.put(json.loads(line))
                    except ValueError:
                        self.replies.put({"malformed": line[:200].decode("utf-8", errors="replace")})
        self.replies.put(None)

    def _pump(self, stream: str, pipe: IO[bytes]) -> None:
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line.startswith(MARK):
                    self._marker(stream, line[len(MARK) :])
                elif line:
                    self._log(stream, line)
        with self._cond:
            self._eof[stream] = True
            self._cond.notify_all()

    def _marker(self, stream: str, text: str) -> None:
        kind, _, tag = text.partition(" ")
        with self._cond:
            if kind == "begin":
                self._routes[stream] = self._jobs_by_tag.get(tag, [])
            elif kind == "end":
                self._routes[stream] = []
                self._ended[stream] = tag
                self._cond.notify_all()

    def _log(self, stream: str, line: str) -> None:
        with self._cond:
            jobs = self._routes[stream]
        self.tail.append(line)
        loggers: dict[int, logging.Logger | logging.LoggerAdapter] = {}
        for job in jobs:
            job.tail.append(line)
            loggers.setdefault(id(job.logger), job.logger)
        for logger in loggers.values() or [idle_log]:
            logger.info("%s%s", self.prefix, line)

    def send(self, tag: str, jobs: list[Job], message: dict[str, Any]) -> None:
        with self._cond:
            self._jobs_by_tag[tag] = jobs
        try:
            self.requests.write(json.dumps(message, default=str) + "\n")
            self.requests.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe was closed by stop()
            pass  # the death shows up as the end of the replies

    def await_reply(self, timeout_s: float) -> dict[str, Any] | None:
        """The next reply; None when the process died first. Raises :class:`RequestTimedOut`."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimedOut
            try:
                return self.replies.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if self.popen.poll() is not None:
                    with contextlib.suppress(queue.Empty):
                        return self.replies.get(timeout=0.5)
                    return None

    def wait_for_logs(self, tag: str) -> None:
        """Until both streams passed the request's end marker, so its last lines land in its log."""
        with self._cond:
            self._cond.wait_for(lambda: all(self._ended[s] == tag or self._eof[s] for s in self._ended), timeout=LOG_SYNC_S)
            self._jobs_by_tag.pop(tag, None)

    def kill(self) -> str:
        """Kill the whole group, read the last output; how the process ended."""
        kill_group(self.popen)
        self._close_and_join()
        return exit_description(self.popen.returncode)

    def stop(self) -> None:
        """Close the request pipe (the worker exits when idle), then make sure its group is gone."""
        self.ask_to_stop()
        self.finish_stop(time.monotonic() + KILL_GRACE_S)

    def ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):
            self.requests.close()

    def finish_stop(self, deadline: float) -> None:
        """Wait until ``deadline`` for the worker to exit by itself, then kill what is left of its group."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        self.kill()

    def _close_and_join(self) -> None:
        with contextlib.suppress(OSError):
            self.requests.close()
        for reader in self._readers:
            reader.join(timeout=LOG_SYNC_S)


# --- one worker -----------------------------------------------------------------------------------------


class Worker:
    """The parent's side of one worker: its queue of jobs and the process serving them.

    The thread of the job at the head of the queue becomes the leader: it (re)starts the process if
    needed and serves a batch of queued jobs; the others wait until their job is done or they lead.
    """

    def __init__(self, pool: WorkerPool, spec: WorkerSpec):
        self.pool = pool
        self.spec = spec
        self.device = spec.device
        self.process: RunnerProcess | None = None
        self.max_batch = 1
        self.versions: dict[str, str] = {}
        self.pid: int | None = None
        """The pid the running process reported when it had loaded."""
        self.last_used = time.monotonic()
        self.closed = False
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._leading = False
        self._in_flight: list[Job] = []
        self._ids = itertools.count(1)

    def run(self, job: Job) -> RunnerResponse:
        with self._cond:
            self._queue.append(job)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: job.done or not self._leading)
                if job.done:
                    break
                self._leading = True
            try:
                self._lead()
            except BaseException as exc:  # an interrupt (or a bug) while leading: nobody may wait forever
                self._abandon(exc, job)
                raise
            finally:
                with self._cond:
                    self._leading = False
                    self.last_used = time.monotonic()
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        assert job.response is not None
        return job.response

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def _take(self, count: int) -> list[Job]:
        with self._cond:
            return [self._queue.popleft() for _ in range(min(count, len(self._queue)))]

    def _lead(self) -> None:
        """Serve the jobs at the head of the queue: start the worker if needed, then one batch."""
        if self.closed:
            for job in self._take(len(self._queue)):
                self._fail(job, failure(self.spec, "was stopped (its flow run ended or was cancelled)", job))
            return
        if self.process is None:
            with self._cond:
                starter = self._queue[0]
            try:
                self._start(starter)
            except EngineError as exc:  # the same settings would fail to load for every queued request
                for job in self._take(len(self._queue)):
                    self._fail(job, exc)
                return
        batch = self._in_flight = self._take(self.max_batch)
        if len(batch) == 1:
            self._serve_alone(batch[0])
        elif batch:
            self._serve_batch(batch)

    def _abandon(self, exc: BaseException, own: Job) -> None:
        """The leader was interrupted: kill the process, fail the jobs it was serving, drop its own."""
        self._discard()
        with self._cond:
            if own in self._queue:
                self._queue.remove(own)
        for job in self._in_flight:
            if not job.done:
                self._fail(job, failure(self.spec, f"was interrupted ({type(exc).__name__}); its process group was killed", job))

    def _start(self, starter: Job) -> None:
        """Start the runner process and wait for its model to load (outside any compute slot)."""
        try:
            process = RunnerProcess(self.spec, starter)
        except OSError as exc:
            raise failure(self.spec, f"could not be started: {exc}", starter) from None
        with self._cond:
            if self.closed:
                process.kill()
                raise failure(self.spec, "was stopped (its flow run ended or was cancelled)", starter)
            self.process = process
        process.send("load", [starter], {"engine": self.spec.engine, "settings": json.loads(self.spec.settings)})
        try:
            ready = process.await_reply(starter.timeout_s)
        except RequestTimedOut:
            self._discard()
            raise failure(self.spec, f"timed out after {starter.timeout_s:g} s loading its model; its process group was killed", starter) from None
        if ready is None:
            how = self._discard()
            raise failure(self.spec, "was stopped (its flow run ended or was cancelled)" if self.closed else f"{how} while loading its model", starter)
        process.wait_for_logs("load")
        starter.load_s += float(ready.get("seconds", 0.0))
        if not ready.get("ok"):
            self._discard()
            raise failure(self.spec, f"failed to load: {ready.get('error_type', 'Error')}: {ready.get('error', 'no message')}", starter)
        self.max_batch = max(1, int(ready.get("max_batch", 1)))
        self.versions = {str(k): str(v) for k, v in ready.get("versions", {}).items()}
        self.pid = int(ready.get("pid", process.pid))
        self.pool.record_start(self.spec, self.pid)

    def _discard(self) -> str:
        """Kill the current process (and its group); how it ended."""
        with self._cond:
            process, self.process = self.process, None
        return process.kill() if process is not None else "was stopped"

    def _exchange(self, jobs: list[Job], message: dict[str, Any]) -> dict[str, Any]:
        """Send one request or batch while holding the compute slots; its reply (validated as a reply)."""
        process = self.process
        assert process is not None
        tag = str(next(self._ids))
        timeout_s = max(job.timeout_s for job in jobs)
        with self.pool.compute_slots(self, jobs[0], process.pid):
            process.send(tag, jobs, {**message, "id": tag})
            try:
                reply = process.await_reply(timeout_s)
            except RequestTimedOut:
                self._discard()
                raise failure(self.spec, f"timed out after {timeout_s:g} s; its process group was killed", jobs[0]) from None
        if reply is None:
            raise WorkerDied(self._discard())
        if reply.get("id") != tag:
            self._discard()
            raise failure(self.spec, f"broke the protocol (answered {str(reply)[:200]!r} to request {tag})", jobs[0])
        process.wait_for_logs(tag)
        return reply

    def _serve_alone(self, job: Job) -> None:
        while True:
            if self.process is None:
                try:
                    self._start(job)
                except EngineError as exc:
                    self._fail(job, exc)
                    return
            try:
                reply = self._exchange([job], job.message())
            except EngineError as exc:
                self._fail(job, exc)
                return
            except WorkerDied as died:
                if self.closed:
                    self._fail(job, failure(self.spec, "was stopped (its flow run ended or was cancelled)", job))
                    return
                if job.restarts >= MAX_RESTARTS:
                    self._fail(job, failure(self.spec, f"{died.how} while serving the request, again after a restart", job))
                    return
                job.restarts += 1
                job.logger.warning("%sthe worker %s while serving %s; restarting it once", f"[{self.spec.label}] ", died.how, job.summary)
                continue
            if reply.get("ok"):
                self._finish(job, reply, reply, batch_size=1)
            else:
                self._fail(job, failure(self.spec, f"failed: {reply.get('error_type', 'Error')}: {reply.get('error', 'no message')}", job))
            return

    def _serve_batch(self, jobs: list[Job]) -> None:
        """One batch; if it fails or kills the worker, each job again alone (so a bad one fails alone)."""
        try:
            reply = self._exchange(jobs, {"batch": [job.message() for job in jobs]})
        except EngineError as exc:
            for job in jobs:
                self._fail(job, exc)
            return
        except WorkerDied as died:
            for job in jobs:
                job.restarts += 1
            jobs[0].logger.warning("%sthe worker %s during a batch of %d; serving them one by one", f"[{self.spec.label}] ", died.how, len(jobs))
            reply = None
        results = reply.get("results") if reply and reply.get("ok") else None
        if results is None:
            if reply is not None:
                jobs[0].logger.warning("%sa batch of %d failed (%s: %s); serving them one by one", f"[{self.spec.label}] ", len(jobs), reply.get("error_type"), reply.get("error"))
            for job in jobs:
                self._serve_alone(job)
            return
        for job, item in zip(jobs, results, strict=True):
            self._finish(job, item, reply, batch_size=len(jobs))

    def _finish(self, job: Job, item: dict[str, Any], reply: dict[str, Any], *, batch_size: int) -> None:
        try:
            response = RunnerResponse(
                result=item.get("result"),
                device=item.get("device"),
                versions=self.versions,
                worker_pid=self.pid,
                load_s=round(job.load_s, 6),
                compute_s=round(float(reply.get("seconds", 0.0)) / batch_size, 6),
                batch_size=batch_size,
            )
        except ValidationError as exc:
            self._fail(job, failure(self.spec, f"wrote a malformed response ({exc.errors()[0]['msg']})", job))
            return
        self.device = response.device
        job.response = response
        job.done = True

    def _fail(self, job: Job, error: EngineError) -> None:
        job.error = error
        job.done = True

    def retire_if_idle(self, idle_s: float) -> bool:
        """Stop the process if nobody used it for ``idle_s`` and nothing waits; True if it was stopped."""
        with self._cond:
            if self._leading or self._queue or self.process is None or time.monotonic() - self.last_used < idle_s:
                return False
            process, self.process = self.process, None
        process.stop()
        return True

    def stop(self) -> Callable[[float], None]:
        """No more requests: ask an idle process to exit, SIGTERM a busy one's group (the worker then
        SIGKILLs its group). Returns what makes sure it is gone, given a deadline (so a pool stops its
        workers side by side)."""
        with self._cond:
            self.closed = True
            process, busy = self.process, self._leading
            if not busy:
                self.process = None
            self._cond.notify_all()
        if process is None:
            return lambda deadline: None
        if busy:  # the leader sees the death, discards the process and fails its jobs
            _signal_group(process.pid, signal.SIGTERM)
            return lambda deadline: kill_group(process.popen)
        process.ask_to_stop()
        return process.finish_stop


# --- pools ----------------------------------------------------------------------------------------------


def default_cpu_slots() -> int:
    """How many CPU workers may compute at once: half the cores (torch uses several each), and 2 GB each."""
    cores = os.cpu_count() or 1
    available_gb = psutil.virtual_memory().available / GIB
    return max(1, min(cores // 2, int(available_gb // 2)))


def memory_limit_mb(memory_gb: float | None, device: str) -> int | None:
    """The ``RLIMIT_DATA`` of a worker, in MB: the engine's estimate, else a share of this machine's memory.

    Only CPU workers get one: CUDA maps large host ranges of its own that the limit would count.
    """
    if device != "cpu":
        return None
    if memory_gb is None:
        memory_gb = psutil.virtual_memory().total * DEFAULT_MEMORY_SHARE / GIB
    return max(64, int(memory_gb * 1024))


class WorkerPool:
    """The workers of one scope (a flow run, or this process), keyed by :class:`WorkerSpec`."""

    def __init__(self, *, idle_s: float | None = None, cpu_slots: int | None = None):
        self.owner_pid = os.getpid()
        self.closed = False
        self.started: list[tuple[WorkerSpec, int]] = []
        """Every runner process this pool started, with the pid it reported (tests count workers by it)."""
        self._workers: dict[WorkerSpec, Worker] = {}
        self._lock = threading.Lock()
        self._cpu_slots = threading.BoundedSemaphore(cpu_slots or default_cpu_slots())
        self._cpu_waiting = 0
        self._stopped = threading.Event()
        with _pools_lock:
            _pools.add(self)
        if idle_s:
            threading.Thread(target=self._retire_idle, args=(idle_s,), name="podforge-worker-reaper", daemon=True).start()

    def run(
        self,
        spec: WorkerSpec,
        request: dict[str, Any],
        workdir: Path,
        *,
        summary: str,
        timeout_s: float,
        logger: logging.Logger | logging.LoggerAdapter = idle_log,
        hooks: ComputeHooks | None = None,
    ) -> RunnerResponse:
        """Serve ``request`` on the worker for ``spec`` (started on first use)."""
        job = Job(request=request, workdir=Path(workdir), summary=summary, timeout_s=timeout_s, logger=logger, hooks=hooks)
        with self._lock:
            if self.closed:
                raise failure(spec, "cannot start: its flow run's engine workers were already stopped", job)
            worker = self._workers.get(spec)
            if worker is None:
                worker = self._workers[spec] = Worker(self, spec)
        return worker.run(job)

    @contextlib.contextmanager
    def compute_slots(self, worker: Worker, leader: Job, pid: int) -> Iterator[None]:
        """A CPU slot for a CPU worker, and the leading request's hooks (a GPU step's slots), around a compute."""
        with contextlib.ExitStack() as held:
            if worker.device == "cpu":
                with self._lock:
                    self._cpu_waiting += 1
                try:
                    self._cpu_slots.acquire()
                finally:
                    with self._lock:
                        self._cpu_waiting -= 1
                held.callback(self._cpu_slots.release)
            if leader.hooks is not None:
                held.enter_context(leader.hooks.computing(pid))
            yield

    def record_start(self, spec: WorkerSpec, pid: int) -> None:
        with self._lock:
            self.started.append((spec, pid))

    def waiting_for_cpu(self) -> int:
        """Requests whose CPU worker is ready but which wait for a CPU compute slot."""
        with self._lock:
            return self._cpu_waiting

    def pending(self) -> int:
        """Requests queued (not yet being served) on all workers."""
        with self._lock:
            workers = list(self._workers.values())
        return sum(worker.pending for worker in workers)

    def close(self) -> None:
        """Stop every worker (killing busy ones with their groups); later requests fail clearly."""
        with self._lock:
            self.closed = True
            workers = list(self._workers.values())
        self._stopped.set()
        finishing = [worker.stop() for worker in workers]
        deadline = time.monotonic() + KILL_GRACE_S
        for finish in finishing:
            finish(deadline)
        with _pools_lock:
            _pools.discard(self)

    def _retire_idle(self, idle_s: float) -> None:
        while not self._stopped.wait(min(idle_s / 2, 30.0)):
            with self._lock:
                workers = list(self._workers.values())
            for worker in workers:
                if worker.retire_if_idle(idle_s):
                    idle_log.info("stopped the idle %s worker (unused for %g s)", worker.spec.label, idle_s)


_pools: set[WorkerPool] = set()
_pools_lock = threading.Lock()
_default_pool: WorkerPool | None = None
_default_lock = threading.Lock()
_active: contextvars.ContextVar[WorkerPool | None] = contextvars.ContextVar("podforge_worker_pool", default=None)


def current_pool() -> WorkerPool:
    """The pool of the enclosing :func:`engine_workers` (even once stopped: its flow run is over), else
    this process's default pool."""
    pool = _active.get()
    if pool is not None and pool.owner_pid == os.getpid():
        return pool
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool.closed or _default_pool.owner_pid != os.getpid():
            _default_pool = WorkerPool(idle_s=float(os.environ.get(IDLE_VARIABLE) or DEFAULT_IDLE_S))
        return _default_pool


@contextlib.contextmanager
def engine_workers(**options: Any) -> Iterator[WorkerPool]:
    """Scope warm workers to a block (a flow run's body): started on first use, all stopped on exit.

    Tasks started inside the block (threads; Prefect copies the context) use this pool; tasks in other
    processes (Ray, Dask) use their own process's pool, stopped when that process exits.
    """
    pool = WorkerPool(**options)
    token = _active.set(pool)
    try:
        yield pool
    finally:
        _active.reset(token)
        pool.close()


def with_engine_workers(body: Callable[P, R]) -> Callable[P, R]:
    """Run a flow's body inside :func:`engine_workers` (put under ``@flow``): its workers stop with the run.

    The signature and docstring stay the flow's own (Prefect builds the run form from them).
    """

    @functools.wraps(body)
    def scoped(*args: P.args, **kwargs: P.kwargs) -> R:
        with engine_workers():
            return body(*args, **kwargs)

    return scoped


def stop_all_workers() -> None:
    """Stop every pool of this process (interpreter exit, after a cancelled flow)."""
    with _pools_lock:
        pools = [pool for pool in _pools if pool.owner_pid == os.getpid()]
    for pool in pools:
        pool.close()


def _forget_inherited_pools() -> None:
    """In a forked child, the parent's workers are not ours to use or stop."""
    global _default_pool, _spawner, _pools_lock, _default_lock
    _pools_lock, _default_lock = threading.Lock(), threading.Lock()  # another thread may have held them
    _pools.clear()
    _default_pool = None
    _spawner = Spawner()


os.register_at_fork(after_in_child=_forget_inherited_pools)
atexit.register(stop_all_workers)
# A cancelled Prefect flow raises in the main thread while a task thread waits for a worker, and the
# interpreter then joins that thread before `atexit` runs; threading's own exit hooks run before the join.
_register_thread_exit = getattr(threading, "_register_atexit", None)
if _register_thread_exit is not None:
    _register_thread_exit(stop_all_workers)
