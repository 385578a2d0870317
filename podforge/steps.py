"""What every task does around its real work: one key from the inputs it declares, a folder named by it,
a clock, and a record.

A task is declared with :func:`step_task`, naming the parameters that change its output::

    @step_task("speech", version="3", key=("text", "voice", "language"))
    def speech(text: str, speaker: str, voice: EngineSpec, language: str, gpu: GpuSettings) -> StepOutput:
        return run_engine_step(voice, SpeechRequest(text=text, language=language), gpu)

``speaker`` (a name for the task run) and ``gpu`` (telemetry settings) are not in the key. A key entry may
reach into a parameter (``"captions.result.ass"``: only that file of the captions step counts). Inside the
task, :func:`current_step` gives the step's key and work folder; Prefect's cache entry uses the same key.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from podforge.caching import ResultSerializer, StepKey, key_inputs, results_dir, step_key, step_workdir
from podforge.config import GpuSettings
from podforge.engines.base import EngineSpec
from podforge.engines.registry import load_engine
from podforge.gpu import GpuUsage, gpu_step, write_samples

ResultT = TypeVar("ResultT", bound=BaseModel)


class StepRecord(BaseModel):
    """One line of the episode's ledger: which step, how it ran, and in which flow run it was made."""

    step: str
    engine: str
    device: str = "cpu"
    seconds: float = 0.0
    load_s: float = Field(default=0.0, description="of `seconds`, time spent starting an engine and loading its model")
    compute_s: float = Field(default=0.0, description="of `seconds`, time its runner computed (GPU-seconds are measured over it)")
    started_at: float | None = Field(default=None, description="when it started (Unix time): where the step sat in its run")
    key: str
    made_in: str | None = Field(default=None, description="the flow run attempt that made it: '<flow run id>#<attempt>'")
    gpu: GpuUsage = Field(default_factory=GpuUsage)
    notes: dict[str, Any] = Field(default_factory=dict)

    def cached_in(self, attempt: str | None) -> bool:
        """True when an earlier flow run (or an earlier attempt of this one) made it: reused from the cache."""
        return self.made_in is not None and self.made_in != attempt


class StepOutput(BaseModel, Generic[ResultT]):
    record: StepRecord
    result: ResultT

    def __cache_content__(self) -> ResultT:
        """Downstream keys depend on the result, not on when or where it was made."""
        return self.result


class StepContext:
    """A step in progress: its key, a working folder named by it, and a running clock."""

    def __init__(self, step: str, key: str):
        self.step = step
        self.key = key
        self._workdir: Path | None = None
        self._started = time.perf_counter()
        self._started_at = time.time()
        self._queued = 0.0

    @contextlib.contextmanager
    def queued(self) -> Iterator[None]:
        """Time spent in this block (waiting for a shared engine) is not the step's work: ``seconds``
        leaves it out and the record notes it as ``queued_s``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._queued += time.perf_counter() - started

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = step_workdir(self.step, self.key)
        return self._workdir

    def record(self, engine: str, *, device: str = "cpu", gpu: GpuUsage | None = None, load_s: float = 0.0, compute_s: float = 0.0, **notes: Any) -> StepRecord:
        if self._queued >= 0.001:
            notes = {**notes, "queued_s": round(self._queued, 3)}
        return StepRecord(
            step=self.step,
            engine=engine,
            device=device,
            seconds=round(time.perf_counter() - self._started - self._queued, 3),
            load_s=round(load_s, 3),
            compute_s=round(compute_s, 3),
            started_at=round(self._started_at, 3),
            key=self.key,
            made_in=current_run_attempt(),
            gpu=gpu or GpuUsage(),
            notes=notes,
        )


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("podforge_step", default=None)


@contextlib.contextmanager
def running(step: StepContext) -> Iterator[StepContext]:
    """Make ``step`` the current step while the block runs (what :func:`step_task` does around a task)."""
    token = _current.set(step)
    try:
        yield step
    finally:
        _current.reset(token)


def current_step() -> StepContext:
    """The step whose task is running in this context (set by :func:`step_task`)."""
    step = _current.get()
    if step is None:
        raise RuntimeError("current_step() is only available inside a function decorated with @step_task")
    return step


def step_task(name: str, *, version: str = "1", key: tuple[str, ...] = (), cached: bool = True, retries: int = 2, **options: Any) -> Callable:
    """Prefect's ``@task`` with what every step shares: one key from the ``key`` parameters, persisted JSON
    results checked before reuse (:mod:`podforge.caching`), retries.

    ``version`` is bumped when the step's code starts producing different output for the same inputs.
    """
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    def decorate(fn: Callable) -> Any:
        signature = inspect.signature(fn)
        unknown = [entry for entry in key if entry.split(".")[0] not in signature.parameters]
        if unknown:
            raise TypeError(f"step {name!r} declares key parameter(s) {unknown} that {fn.__name__}() does not take")

        @functools.wraps(fn)
        def run_step(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with running(StepContext(name, step_key(name, version, key_inputs(key, bound.arguments)))):
                return fn(*args, **kwargs)

        if cached:
            policy = StepKey(step=name, version=version, params=key)
            options.update(cache_policy=policy, persist_result=True, result_storage=results_dir(), result_serializer=ResultSerializer())
        else:
            options.update(cache_policy=NO_CACHE)
        return task(name=name, version=version, retries=retries, retry_delay_seconds=2, **options)(run_step)

    return decorate


def current_run_attempt() -> str | None:
    """This flow run and attempt (``prefect flow-run retry`` keeps the id and counts up the attempt)."""
    from prefect.runtime import flow_run

    return f"{flow_run.id}#{flow_run.run_count}" if flow_run.id else None


def run_engine_step(spec: EngineSpec, request: BaseModel, gpu: GpuSettings) -> StepOutput:
    """Run ``spec``'s engine on ``request`` in the current step's folder.

    A CUDA engine holds its VRAM in GPU slots while it runs and is measured with NVML (see
    :func:`podforge.gpu.gpu_step`); ``spec`` has already been placed on this machine by the plan.
    """
    step = current_step()
    loading = time.perf_counter()
    engine = load_engine(spec)  # an in-process engine loads its model on first use in this process
    load_s = time.perf_counter() - loading
    with contextlib.ExitStack() as held:
        with step.queued():
            held.enter_context(engine.turn())
        with gpu_step(spec.name, spec.resources.device, spec.resources.vram_gb, gpu, in_process=spec.resources.env is None) as telemetry:
            result = engine.run(request, step.workdir)
    if telemetry.samples:
        write_samples(step.workdir / "nvml-samples.jsonl", telemetry.samples)
    device = telemetry.reported_device or spec.resources.device
    load_s += telemetry.load_s  # a warm worker's model load, when this request started it
    record = step.record(spec.name, device=device, gpu=telemetry.usage, load_s=load_s if load_s >= 0.001 else 0.0, compute_s=telemetry.compute_s)
    return StepOutput(record=record, result=result)
