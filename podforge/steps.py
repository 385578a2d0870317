"""What every task does around its real work: pick a working folder by content, time it, record it.

Tasks stay thin: they build a request, call :func:`run_engine_step` (or, for their own ffmpeg work, open a
:class:`StepContext`) and return a :class:`StepOutput`, which Prefect persists and caches.
"""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from podforge.caching import CONTENT, content_key, results_dir, step_workdir
from podforge.config import GpuSettings
from podforge.cost import price_gpu_seconds
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
        """Downstream cache keys depend on the result, not on when or where it was made."""
        return self.result


class StepContext:
    """A step in progress: its cache key, a working folder named by it, and a running clock."""

    def __init__(self, step: str, engine: str, key_inputs: dict[str, Any]):
        self.step = step
        self.engine = engine
        self.key = content_key(step, key_inputs)
        self.workdir = step_workdir(step, self.key)
        self._started = time.perf_counter()

    def record(self, device: str = "cpu", gpu: GpuUsage | None = None, **notes: Any) -> StepRecord:
        return StepRecord(
            step=self.step,
            engine=self.engine,
            device=device,
            seconds=round(time.perf_counter() - self._started, 3),
            key=self.key,
            made_in=current_run_attempt(),
            gpu=gpu or GpuUsage(),
            notes=notes,
        )


def step_task(name: str, *, cached: bool = True, retries: int = 2, **options: Any):
    """Prefect's ``@task`` with what every step shares: content cache, persisted results, retries."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    if cached:
        options.update(cache_policy=CONTENT, persist_result=True, result_storage=results_dir())
    else:
        options.update(cache_policy=NO_CACHE)
    return task(name=name, retries=retries, retry_delay_seconds=2, **options)


def current_run_attempt() -> str | None:
    """This flow run and attempt (``prefect flow-run retry`` keeps the id and counts up the attempt)."""
    from prefect.runtime import flow_run

    return f"{flow_run.id}#{flow_run.run_count}" if flow_run.id else None


def run_engine_step(step: str, spec: EngineSpec, request: BaseModel, gpu: GpuSettings) -> StepOutput:
    """Run ``spec``'s engine on ``request`` in a folder named by the request's content.

    A CUDA engine holds its VRAM in GPU slots while it runs and is measured with NVML (see
    :func:`podforge.gpu.gpu_step`); ``spec`` has already been placed by :func:`podforge.gpu.resolve_device`.
    """
    context = StepContext(step, spec.name, {"engine": spec, "request": request})
    with gpu_step(spec, gpu) as telemetry:
        result = load_engine(spec).run(request, context.workdir)
    usage = telemetry.usage
    if telemetry.sampler.samples:
        write_samples(context.workdir / "nvml-samples.jsonl", telemetry.sampler.samples)
    if usage.gpu_seconds:
        usage = usage.model_copy(update={"cost_usd": round(price_gpu_seconds(usage.gpu_seconds, gpu.price_as), 6)})
    device = telemetry.reported_device or spec.resources.device
    return StepOutput(record=context.record(device=device, gpu=usage), result=result)
