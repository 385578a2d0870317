"""GPUs: what NVML sees, VRAM-weighted scheduling with Prefect, telemetry and the silent-CPU-fallback guard.

* :func:`list_gpus` asks NVML (``nvidia-ml-py``) for the GPUs; none without a driver (``NVMLError``).
* :func:`ensure_gpu_limits` creates or updates one Prefect global concurrency limit per GPU whose slots are
  its VRAM in whole GiB; :func:`gpu_slots` holds as many slots as a step needs (``strict=True``, so a
  missing limit is an error rather than a silently skipped limit).
* :class:`GpuSampler` samples NVML about twice a second for a runner process and its children; the samples
  become :class:`~podforge.steps.GpuUsage` (:func:`usage_from_samples`) and are judged by the guard
  (:func:`assess_fallback`): a step that asked for CUDA but never appeared on a GPU, or kept it near 0%.
* :func:`gpu_step` puts these together around one engine step, holding slots and sampling only while a
  request computes (not while it queues for a warm worker or waits for its model to load). (Where an
  engine runs on a machine without a GPU is decided by the episode plan, :mod:`podforge.planning`.)

No false alarms: where NVML cannot report utilisation (MIG slices, some vGPUs) it is "unknown", never 0%;
where NVML lists no processes at all (a container whose PID namespace NVML does not see) the step is
attributed by the growth of the GPUs' used memory instead; and a runner is pinned to its GPU by UUID within
the devices the scheduler already allowed (``CUDA_VISIBLE_DEVICES``), never by overwriting them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pynvml
from pydantic import BaseModel, Field

from podforge.config import GpuSettings
from podforge.errors import EngineError
from podforge.io import write_text_atomic
from podforge.runner import RunnerResponse, observe_runners, step_logger

SAMPLE_INTERVAL_S = 0.5
GIB = 1024**3
MIB = 1024**2


MEMORY_DELTA_MIN_BYTES = 256 * 1024**2
"""Growth of a GPU's used memory that counts as "the step is on it" when NVML lists no processes."""


class GpuUsage(BaseModel):
    """What a step really did on the GPU (all zero on a CPU step or a machine without NVML)."""

    gpu_seconds: float = 0.0
    peak_vram_mb: float = 0.0
    mean_utilization: float | None = Field(default=0.0, description="percent; None where NVML cannot report utilisation (MIG, some vGPUs)")
    samples: int = Field(default=0, description="NVML samples taken (0: a CPU step, or no NVML)")
    attribution: str = Field(default="processes", description="how the step was found on a GPU: NVML's process list, or (containers) memory growth")
    flagged: str | None = Field(default=None, description="why the step looks like a silent CPU fallback")


class GpuInfo(BaseModel):
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_free_bytes: int | None = Field(default=None, description="free when NVML was asked (nvmlDeviceGetMemoryInfo.free)")
    driver_version: str

    @property
    def vram_gb(self) -> int:
        """Whole GiB of VRAM: the number of scheduling slots this GPU has."""
        return self.memory_total_bytes // GIB


class NvmlReport(BaseModel):
    """What NVML says about this machine, or why it could not say anything."""

    gpus: list[GpuInfo] = Field(default_factory=list)
    driver_version: str | None = None
    cuda_driver_version: str | None = Field(default=None, description="the newest CUDA the driver supports, e.g. 12.4")
    error: str | None = None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def nvml_report() -> NvmlReport:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return NvmlReport(error=f"{type(exc).__name__}: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory_total_bytes=int(memory.total),
                    memory_free_bytes=int(memory.free),
                    driver_version=driver,
                )
            )
        return NvmlReport(gpus=gpus, driver_version=driver, cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}")
    except pynvml.NVMLError as exc:
        return NvmlReport(error=f"{type(exc).__name__}: {exc}")
    finally:
        pynvml.nvmlShutdown()


def list_gpus() -> list[GpuInfo]:
    """The GPUs NVML sees; empty on a machine without an NVIDIA driver."""
    return nvml_report().gpus


# --- scheduling -----------------------------------------------------------------------------------------


def limit_name(gpu_index: int) -> str:
    return f"gpu-{gpu_index}-vram-gb"


def ensure_gpu_limits(gpus: Iterable[GpuInfo]) -> dict[str, int]:
    """Create or update one Prefect global concurrency limit per GPU (slots = VRAM in whole GiB)."""
    from prefect.client.orchestration import get_client

    limits = {limit_name(gpu.index): gpu.vram_gb for gpu in gpus}
    if limits:
        with get_client(sync_client=True) as client:
            for name, slots in limits.items():
                client.upsert_global_concurrency_limit_by_name(name, slots)
    return limits


@contextlib.contextmanager
def gpu_slots(vram_gb: float, gpu_index: int = 0) -> Iterator[int]:
    """Hold ``ceil(vram_gb)`` slots (at least one) of GPU ``gpu_index``'s limit while the block runs."""
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    name = limit_name(gpu_index)
    occupy = max(1, math.ceil(vram_gb))
    held = contextlib.ExitStack()
    try:
        held.enter_context(concurrency(name, occupy=occupy, strict=True))
    except ConcurrencySlotAcquisitionError as exc:  # prefect 3.8 exports it only from this module
        raise EngineError(
            f"cannot take {occupy} GB of GPU {gpu_index}'s slots from Prefect limit {name!r} ({exc}); "
            "the flow creates the limits at start with podforge.gpu.ensure_gpu_limits(list_gpus())",
            field="gpu",
        ) from None
    with held:
        yield occupy


# --- telemetry ------------------------------------------------------------------------------------------


class NvmlProcess(BaseModel):
    """One entry of ``nvmlDeviceGetComputeRunningProcesses`` (an ``nvmlProcessInfo_t``)."""

    pid: int
    usedGpuMemory: int | None = Field(default=None, description="bytes; None where NVML cannot tell (Windows WDDM)")


class NvmlUtilization(BaseModel):
    """``nvmlDeviceGetUtilizationRates``: percent of the last sample period the GPU / memory was busy."""

    gpu: int
    memory: int = 0


class NvmlDeviceSample(BaseModel):
    index: int
    utilization: NvmlUtilization | None = Field(default=None, description="None: NVML said not supported (MIG, vGPU) or failed")
    processes: list[NvmlProcess] = Field(default_factory=list)
    memory_used: int | None = Field(default=None, description="bytes in use on the whole device (nvmlDeviceGetMemoryInfo.used)")


class NvmlSample(BaseModel):
    """One look at every GPU, and which pids were the step's at that moment."""

    t: float
    watched_pids: list[int]
    devices: list[NvmlDeviceSample]

    def step_devices(self) -> list[NvmlDeviceSample]:
        """The devices on which one of the watched processes had a compute context."""
        watched = set(self.watched_pids)
        return [device for device in self.devices if any(p.pid in watched for p in device.processes)]

    def step_memory_bytes(self) -> int:
        watched = set(self.watched_pids)
        return sum(p.usedGpuMemory or 0 for device in self.devices for p in device.processes if p.pid in watched)

    def lists_processes(self) -> bool:
        """Whether NVML listed any compute process at all on any device."""
        return any(device.processes for device in self.devices)


def device_sample(index: int, utilization: Any, processes: Iterable[Any], memory: Any = None) -> NvmlDeviceSample:
    """Convert pynvml's structures (``c_nvmlUtilization_t``, ``c_nvmlProcessInfo_t``, ``c_nvmlMemory_t``) into a sample."""
    return NvmlDeviceSample(
        index=index,
        utilization=NvmlUtilization(gpu=int(utilization.gpu), memory=int(utilization.memory)) if utilization is not None else None,
        processes=[NvmlProcess(pid=int(p.pid), usedGpuMemory=None if p.usedGpuMemory is None else int(p.usedGpuMemory)) for p in processes],
        memory_used=int(memory.used) if memory is not None else None,
    )


def write_samples(path: Path, samples: list[NvmlSample]) -> None:
    """Keep a step's samples as JSON lines beside its outputs (what :func:`load_samples` reads back)."""
    write_text_atomic(path, "".join(sample.model_dump_json() + "\n" for sample in samples))


def load_samples(path: Path) -> list[NvmlSample]:
    """Samples from a JSON-lines file (``#`` lines are comments), as recorded by :class:`GpuSampler`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [NvmlSample.model_validate(json.loads(line)) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def memory_growth(samples: list[NvmlSample]) -> dict[int, list[int]]:
    """Per device index, its used memory in each sample minus that in the first (bytes; devices without readings left out)."""
    growth: dict[int, list[int]] = {}
    if not samples:
        return growth
    baseline = {device.index: device.memory_used for device in samples[0].devices if device.memory_used is not None}
    for sample in samples:
        for device in sample.devices:
            if device.index in baseline and device.memory_used is not None:
                growth.setdefault(device.index, []).append(device.memory_used - baseline[device.index])
    return growth


def processes_invisible(samples: list[NvmlSample]) -> bool:
    """NVML listed no process on any device in any sample: it cannot see this PID namespace (a container)."""
    return bool(samples) and not any(sample.lists_processes() for sample in samples)


def usage_from_memory_growth(samples: list[NvmlSample]) -> GpuUsage:
    """Usage where NVML lists no processes: a device counts as the step's while its used memory has grown
    by at least :data:`MEMORY_DELTA_MIN_BYTES` since the first sample. Another job starting on the same GPU
    would count too, so this is the fallback, not the rule."""
    growth = memory_growth(samples)
    busy_devices = {index for index, deltas in growth.items() if max(deltas) >= MEMORY_DELTA_MIN_BYTES}
    gpu_seconds = 0.0
    busy: list[int] = []
    for position, (sample, following) in enumerate(itertools.pairwise(samples)):
        held = [device for device in sample.devices if device.index in busy_devices and growth[device.index][position] >= MEMORY_DELTA_MIN_BYTES]
        gpu_seconds += len(held) * (following.t - sample.t)
        busy += [device.utilization.gpu for device in held if device.utilization is not None]
    peak = max((max(growth[index]) for index in busy_devices), default=0)
    return GpuUsage(
        gpu_seconds=round(gpu_seconds, 3),
        peak_vram_mb=round(peak / MIB, 1),
        mean_utilization=round(sum(busy) / len(busy), 1) if busy else None,
        samples=len(samples),
        attribution="memory growth",
    )


def usage_from_samples(samples: list[NvmlSample]) -> GpuUsage:
    """GPU-seconds (time the step held a GPU, per GPU), peak VRAM and mean utilisation while it did.

    Utilisation is NVML's per-device figure, so another process busy on the same GPU counts too; it is
    None (unknown) when NVML reported none while the step was on a GPU. Where NVML lists no processes at
    all, the step is found by memory growth (:func:`usage_from_memory_growth`).
    """
    if processes_invisible(samples):
        return usage_from_memory_growth(samples)
    gpu_seconds = 0.0
    for sample, following in itertools.pairwise(samples):
        gpu_seconds += len(sample.step_devices()) * (following.t - sample.t)
    held = [device for sample in samples for device in sample.step_devices()]
    busy = [device.utilization.gpu for device in held if device.utilization is not None]
    peak_bytes = max((sample.step_memory_bytes() for sample in samples), default=0)
    return GpuUsage(
        gpu_seconds=round(gpu_seconds, 3),
        peak_vram_mb=round(peak_bytes / MIB, 1),
        mean_utilization=round(sum(busy) / len(busy), 1) if busy else (None if held else 0.0),
        samples=len(samples),
    )


def assess_fallback(
    requested_device: str,
    samples: list[NvmlSample],
    *,
    min_util: float = 5.0,
    min_samples: int = 3,
    reported_device: str | None = None,
) -> str | None:
    """Why a step that asked for CUDA looks like it silently ran on the CPU, or None.

    Flags: the runner itself said it ran on the CPU; its processes never appeared on any GPU (or, where
    NVML lists no processes, no GPU's memory grew); or they did but utilisation stayed below ``min_util``
    percent. Unknown utilisation is not low utilisation: it is never flagged. With fewer than
    ``min_samples`` samples (no NVML, or a step too short to judge) only the runner's own report counts.
    """
    if requested_device != "cuda":
        return None
    if reported_device is not None and reported_device != "cuda":
        return f"asked for CUDA but the runner reported that it ran on {reported_device!r}"
    if len(samples) < min_samples:
        return None
    seconds = samples[-1].t - samples[0].t
    usage = usage_from_samples(samples)
    if usage.attribution == "memory growth":
        if usage.gpu_seconds == 0:
            return (
                f"asked for CUDA but no GPU's used memory grew by {MEMORY_DELTA_MIN_BYTES // MIB} MiB or more in {len(samples)} NVML samples "
                f"over {seconds:.1f} s (NVML lists no processes here, as in a container): the model most likely ran on the CPU "
                "(run `podforge envs doctor`)"
            )
    elif not any(sample.step_devices() for sample in samples):
        return (
            f"asked for CUDA but its processes never appeared on a GPU in {len(samples)} NVML samples over {seconds:.1f} s: "
            "the model most likely ran on the CPU (run `podforge envs doctor`)"
        )
    if usage.mean_utilization is not None and usage.mean_utilization < min_util:
        return (
            f"asked for CUDA and held {usage.peak_vram_mb:.0f} MB on the GPU, but utilisation averaged {usage.mean_utilization:.1f}% "
            f"(below {min_util:g}%) over {usage.samples} samples: the model or its inputs were probably left on the CPU"
        )
    return None


class GpuSampler:
    """Samples NVML every ``interval_s`` in a thread for the watched pids and their children.

    Without NVML it records nothing, and :meth:`stop` returns an all-zero :class:`GpuUsage`.
    """

    def __init__(self, pid: int | None = None, *, interval_s: float = SAMPLE_INTERVAL_S):
        self.interval_s = interval_s
        self.samples: list[NvmlSample] = []
        self._roots: set[int] = {pid} if pid is not None else set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        with self._lock:
            self._roots.add(pid)

    def start(self) -> bool:
        """Start sampling; False (and nothing recorded) when NVML is not available."""
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return False
        self._thread = threading.Thread(target=self._run, name="podforge-gpu-sampler", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> GpuUsage:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            pynvml.nvmlShutdown()
        return usage_from_samples(self.samples)

    def _run(self) -> None:
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            step_logger().warning("GPU telemetry is off for this step: %s", exc)
            return
        while True:
            self.samples.append(self._sample(handles))
            if self._stop.wait(self.interval_s):
                self.samples.append(self._sample(handles))  # close the last interval
                return

    def _watched_pids(self) -> list[int]:
        """The watched pids and their children; this process alone while nothing is watched yet."""
        with self._lock:
            roots = set(self._roots)
        if not roots:
            return [os.getpid()]
        watched = set(roots)
        for pid in roots:
            with contextlib.suppress(psutil.Error):
                watched.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        return sorted(watched)

    def _sample(self, handles: list[Any]) -> NvmlSample:
        devices = []
        for index, handle in enumerate(handles):
            try:
                utilization = pynvml.nvmlDeviceGetUtilizationRates(handle)
            except pynvml.NVMLError:
                utilization = None
            try:
                processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except pynvml.NVMLError:
                processes = []
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            except pynvml.NVMLError:
                memory = None
            devices.append(device_sample(index, utilization, processes, memory))
        return NvmlSample(t=time.time(), watched_pids=self._watched_pids(), devices=devices)


# --- one GPU step ---------------------------------------------------------------------------------------


def visible_gpus(gpus: list[GpuInfo], cuda_visible_devices: str | None) -> list[GpuInfo] | None:
    """The GPUs this process may use, in CUDA's order, from an existing ``CUDA_VISIBLE_DEVICES``.

    ``None`` (unset) means all of NVML's GPUs. Entries are NVML/PCI indices or GPU UUIDs (or unique
    prefixes of them, as CUDA accepts); CUDA stops at the first entry it cannot use, and so does this.
    Returns None when the value holds something that cannot be mapped to a whole GPU (a ``MIG-`` instance):
    then the restriction is left exactly as it is.
    """
    if cuda_visible_devices is None:
        return list(gpus)
    chosen: list[GpuInfo] = []
    for entry in (part.strip() for part in cuda_visible_devices.split(",")):
        if entry.startswith("MIG-"):
            return None
        if entry.lstrip("-").isdigit():
            match = [gpu for gpu in gpus if gpu.index == int(entry)]
        else:
            match = [gpu for gpu in gpus if entry and gpu.uuid.startswith(entry if entry.startswith("GPU-") else f"GPU-{entry}")]
        if len(match) != 1 or match[0] in chosen:
            break
        chosen.append(match[0])
    return chosen


def runner_device_env(gpu_index: int, gpus: list[GpuInfo], cuda_visible_devices: str | None) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` for a runner that should use NVML's GPU ``gpu_index``.

    The GPU is named by its UUID, which means the same device to NVML and in every CUDA device order. An
    existing restriction (a scheduler that gave this process some GPUs) is respected: the runner is only
    narrowed to a GPU inside it, and where ``gpu_index`` is not inside it, or the restriction cannot be
    read (``MIG-`` instances), the restriction is passed on unchanged.
    """
    allowed = visible_gpus(gpus, cuda_visible_devices)
    chosen = [gpu for gpu in allowed or [] if gpu.index == gpu_index]
    if not chosen:
        return {}
    return {"CUDA_VISIBLE_DEVICES": chosen[0].uuid}


class GpuStep:
    """One engine step's runner work: the GPU slots and NVML samples of each compute, and what it cost.

    A step's requests may wait in a worker's queue and its first may wait for the model to load; neither
    holds the GPU's slots nor counts as GPU time (the load is recorded as ``load_s``, not priced).
    :meth:`computing` is entered around each compute. A warm worker's weights stay in VRAM between its
    requests without holding slots, so the slots meter what requests compute, not what idle models keep.
    """

    def __init__(self, device: str, vram_gb: float, gpu_index: int | None, gpus: list[GpuInfo] | None = None):
        self.requested_device = device
        self.vram_gb = vram_gb
        self.gpu_index = gpu_index
        self.gpus = gpus or []
        self.reported_device: str | None = None
        self.samples: list[NvmlSample] = []
        self.usage = GpuUsage()
        self.load_s = 0.0
        self.compute_s = 0.0
        self._computes: list[GpuUsage] = []

    def runner_env(self) -> dict[str, str]:
        if self.gpu_index is None:
            return {}
        return runner_device_env(self.gpu_index, self.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))

    @contextlib.contextmanager
    def computing(self, pid: int | None) -> Iterator[None]:
        """On a CUDA step, hold the GPU's slots and sample ``pid`` and its children (None: this process)."""
        if self.gpu_index is None:
            yield
            return
        with gpu_slots(self.vram_gb, self.gpu_index):
            sampler = GpuSampler(pid)
            sampler.start()
            try:
                yield
            finally:
                self._computes.append(sampler.stop())
                self.samples.extend(sampler.samples)

    def runner_finished(self, response: RunnerResponse) -> None:
        self.reported_device = response.device
        self.load_s += response.load_s
        self.compute_s += response.compute_s

    def measured_usage(self) -> GpuUsage:
        """GPU-seconds summed over the computes (not the gaps between them); peak and utilisation over all."""
        if not self._computes:
            return GpuUsage()
        return usage_from_samples(self.samples).model_copy(update={"gpu_seconds": round(sum(usage.gpu_seconds for usage in self._computes), 3)})


@contextlib.contextmanager
def gpu_step(engine: str, device: str, vram_gb: float, settings: GpuSettings, *, in_process: bool = False) -> Iterator[GpuStep]:
    """Around one engine step: GPU slots and NVML telemetry while it computes, the guard afterwards.

    An engine that runs in an environment holds the slots only while a request computes in its worker
    (:meth:`GpuStep.computing`); an ``in_process`` CUDA engine holds them, sampling this process, for
    the whole step. ``step.usage`` holds the measurements (and the flag) once the block has finished;
    ``step.load_s`` and ``step.compute_s`` what the runners reported.
    """
    cuda = device == "cuda"
    step = GpuStep(device, vram_gb, settings.gpu_index if cuda else None, list_gpus() if cuda else None)
    with contextlib.ExitStack() as held:
        if cuda and in_process:
            held.enter_context(step.computing(None))
        held.enter_context(observe_runners(step))
        yield step
    step.usage = step.measured_usage()
    if not cuda:
        return
    flag = assess_fallback("cuda", step.samples, min_util=settings.min_utilization, reported_device=step.reported_device)
    if flag and settings.guard != "off":
        step.usage = step.usage.model_copy(update={"flagged": flag})
        if settings.guard == "fail":
            raise EngineError(f"engine {engine!r} {flag}", field="gpu.guard")
        step_logger().warning("engine %r %s", engine, flag)
