"""GPUs: NVML's absence handled, telemetry and the silent-CPU-fallback guard on recorded NVML samples,
the no-GPU fallback rule, and VRAM-weighted scheduling on a real Prefect API."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Literal

import pynvml
import pytest
import soundfile
from prefect import flow, task

from podforge import envs, gpu
from podforge.engines.base import (
    EngineSettings,
    Engine,
    EngineSpec,
    MusicRequest,
    MusicResult,
    Resources,
)
from podforge.errors import EngineError
from podforge.gpu import (
    GpuInfo,
    GpuSampler,
    GpuSettings,
    assess_fallback,
    load_samples,
    usage_from_samples,
)
from podforge.runner import run_in_env
from podforge.planning import place
from podforge.steps import GpuUsage, StepContext, run_engine_step, running

NVML_DATA = Path(__file__).parent / "data" / "nvml"
NO_GPU_HERE = not gpu.list_gpus()


def samples(name: str) -> list[gpu.NvmlSample]:
    return load_samples(NVML_DATA / name)


# --- NVML on this machine -------------------------------------------------------------------------------


@pytest.mark.skipif(not NO_GPU_HERE, reason="this machine has an NVIDIA GPU")
def test_without_nvml_there_are_no_gpus_and_the_sampler_records_nothing():
    report = gpu.nvml_report()
    assert report.gpus == [] and report.error and report.error.startswith("NVMLError")
    sampler = GpuSampler(12345)
    assert sampler.start() is False
    assert sampler.stop() == GpuUsage()
    assert sampler.samples == []


def test_pynvml_structures_become_samples():
    utilization = pynvml.c_nvmlUtilization_t(gpu=87, memory=41)
    # nvmlDeviceGetComputeRunningProcesses returns the structs as "friendly objects", with usedGpuMemory
    # set to None where NVML reports NVML_VALUE_NOT_AVAILABLE.
    listed = pynvml.nvmlStructToFriendlyObject(pynvml.c_nvmlProcessInfo_t(pid=4242, usedGpuMemory=3 * 1024**3))
    unknown = pynvml.nvmlStructToFriendlyObject(pynvml.c_nvmlProcessInfo_t(pid=4250, usedGpuMemory=pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value))
    unknown.usedGpuMemory = None
    device = gpu.device_sample(1, utilization, [listed, unknown])
    assert device.index == 1 and device.utilization.gpu == 87 and device.utilization.memory == 41
    assert [(p.pid, p.usedGpuMemory) for p in device.processes] == [(4242, 3 * 1024**3), (4250, None)]


# --- telemetry and the guard on recorded samples --------------------------------------------------------


def test_a_busy_step_is_measured_and_not_flagged():
    recorded = samples("musicgen_busy.jsonl")
    usage = usage_from_samples(recorded)
    # On the GPU in the 16 samples from t+1.5 s to t+9.0 s, 0.5 s apart; the notebook's 500 MiB is not ours.
    assert usage.gpu_seconds == pytest.approx(8.0)
    assert usage.peak_vram_mb == pytest.approx(3584.0)
    assert usage.mean_utilization == pytest.approx((10 + 20 + 14 * 80) / 16, abs=0.05)
    assert usage.samples == 21
    assert assess_fallback("cuda", recorded) is None


def test_a_step_that_never_reached_the_gpu_is_flagged():
    recorded = samples("sadtalker_never_on_gpu.jsonl")
    assert usage_from_samples(recorded).gpu_seconds == 0
    flag = assess_fallback("cuda", recorded)
    assert flag is not None and "never appeared on a GPU in 25 NVML samples over 12.0 s" in flag


def test_a_step_that_held_the_gpu_but_left_it_idle_is_flagged():
    recorded = samples("sadtalker_idle_on_gpu.jsonl")
    flag = assess_fallback("cuda", recorded, min_util=5)
    assert flag is not None and "held 1229 MB" in flag and "averaged 0.8%" in flag and "left on the CPU" in flag
    assert assess_fallback("cuda", recorded, min_util=0.5) is None  # the threshold is configurable


def test_the_guard_only_judges_cuda_steps_with_enough_samples():
    assert assess_fallback("cpu", samples("sadtalker_never_on_gpu.jsonl")) is None
    assert assess_fallback("cuda", samples("short_step.jsonl")) is None
    assert assess_fallback("cuda", []) is None  # no NVML: nothing to judge ...
    flag = assess_fallback("cuda", [], reported_device="cpu")  # ... except the runner's own word
    assert flag == "asked for CUDA but the runner reported that it ran on 'cpu'"


def test_unknown_process_memory_and_several_gpus_are_counted_right():
    unknown_memory = usage_from_samples(samples("memory_not_available.jsonl"))
    assert unknown_memory.gpu_seconds == pytest.approx(2.5) and unknown_memory.peak_vram_mb == 0
    assert assess_fallback("cuda", samples("memory_not_available.jsonl")) is None
    two = usage_from_samples(samples("two_gpus.jsonl"))
    assert two.gpu_seconds == pytest.approx(2 * 4 * 0.5)  # two GPUs, four half-second intervals
    assert two.peak_vram_mb == pytest.approx(4096.0) and two.mean_utilization == pytest.approx(90.0)


def test_utilisation_nvml_cannot_report_is_unknown_and_never_flagged():
    recorded = samples("mig_utilization_not_supported.jsonl")  # constructed: a MIG slice
    usage = usage_from_samples(recorded)
    assert usage.mean_utilization is None
    assert usage.gpu_seconds == pytest.approx(17 * 0.5) and usage.peak_vram_mb == pytest.approx(3200.0)  # listed from sample 2 of 20
    assert assess_fallback("cuda", recorded, min_util=5) is None


def test_without_process_lists_the_step_is_found_by_memory_growth():
    recorded = samples("container_no_process_list.jsonl")  # constructed: a container's empty process lists
    usage = usage_from_samples(recorded)
    assert usage.attribution == "memory growth"
    assert usage.peak_vram_mb == pytest.approx(4096.0)  # GPU 1 only: GPU 0's 9 GB were there before
    assert usage.gpu_seconds == pytest.approx(16 * 0.5)  # samples 3..18 had grown by >= 256 MiB
    assert usage.mean_utilization == pytest.approx(85.0)
    assert assess_fallback("cuda", recorded) is None


def test_without_process_lists_a_step_that_grew_no_memory_is_flagged():
    flag = assess_fallback("cuda", samples("container_no_process_list_cpu.jsonl"))
    assert flag is not None and "no GPU's used memory grew by 256 MiB" in flag and "NVML lists no processes" in flag


def gpus_of_a_four_gpu_node() -> list[GpuInfo]:
    """Constructed: four GPUs as NVML would list them (NVML indices follow PCI bus order)."""
    return [GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i}a2b3c4d-0000-1111-2222-33334444555{i}", memory_total_bytes=80 * 1024**3, driver_version="570.86") for i in range(4)]


def test_a_runner_is_pinned_to_its_gpu_by_uuid():
    gpus = gpus_of_a_four_gpu_node()
    assert gpu.runner_device_env(2, gpus, None) == {"CUDA_VISIBLE_DEVICES": gpus[2].uuid}


def test_an_existing_device_restriction_is_respected():
    gpus = gpus_of_a_four_gpu_node()
    # a scheduler gave this process GPUs 2 and 3, by index or by UUID (prefixes allowed, as CUDA does)
    assert gpu.visible_gpus(gpus, "2,3") == [gpus[2], gpus[3]]
    assert gpu.visible_gpus(gpus, f"{gpus[3].uuid},GPU-2a2b") == [gpus[3], gpus[2]]
    assert gpu.runner_device_env(3, gpus, "2,3") == {"CUDA_VISIBLE_DEVICES": gpus[3].uuid}
    # GPU 0 is not among them: the runner keeps the scheduler's choice rather than escaping it
    assert gpu.runner_device_env(0, gpus, "2,3") == {}
    # CUDA stops at the first entry it cannot use; a MIG instance is passed on untouched
    assert gpu.visible_gpus(gpus, "1,7,2") == [gpus[1]]
    assert gpu.visible_gpus(gpus, "MIG-5c0c1b6f-7b8e-5a7e-9c6e-1a2b3c4d5e6f") is None
    assert gpu.runner_device_env(0, gpus, "MIG-5c0c1b6f-7b8e-5a7e-9c6e-1a2b3c4d5e6f") == {}
    assert gpu.runner_device_env(0, gpus, "") == {}


def test_samples_kept_beside_a_step_read_back_the_same(tmp_path):
    recorded = samples("musicgen_busy.jsonl")
    gpu.write_samples(tmp_path / "nvml-samples.jsonl", recorded)
    assert load_samples(tmp_path / "nvml-samples.jsonl") == recorded


# --- the rule for machines without a GPU ----------------------------------------------------------------


def cuda_spec(*, cpu_fallback: bool = False) -> EngineSpec:
    settings = IsolationSettings(cpu_fallback=cpu_fallback)
    return EngineSpec(name="isolation", impl="test_gpu:IsolationCheckEngine", kind="music", version="1", settings=settings.model_dump(), resources=IsolationCheckEngine.resources_for(settings))


A_T4 = GpuInfo(index=0, name="Tesla T4", uuid="GPU-0", memory_total_bytes=15_360 * 1024**2, driver_version="550.54")


def test_without_a_gpu_a_cuda_engine_fails_clearly_unless_cpu_is_allowed():
    with pytest.raises(EngineError) as caught:
        place(cuda_spec(), GpuSettings(), [])
    assert "engine 'isolation' needs a CUDA GPU, but no NVIDIA GPU was found" in caught.value.message
    assert "cpu_fallback: true" in caught.value.message
    for spec, settings in ((cuda_spec(cpu_fallback=True), GpuSettings()), (cuda_spec(), GpuSettings(cpu_fallback=True))):
        on_cpu = place(spec, settings, [])
        assert on_cpu.resources.device == "cpu" and on_cpu.resources.vram_gb == 0 and on_cpu.settings["device"] == "cpu"
    assert place(cuda_spec(), GpuSettings(), [A_T4]) == cuda_spec()
    assert A_T4.vram_gb == 15


class IsolationSettings(EngineSettings):
    device: Literal["cuda", "cpu"] = "cuda"
    cpu_fallback: bool = False


class IsolationCheckEngine(Engine[MusicRequest, MusicResult]):
    """A small real engine: runs external/isolation-check through the runner protocol."""

    name = "isolation"
    kind = "music"
    Request = MusicRequest
    Result = MusicResult
    Settings = IsolationSettings
    settings: IsolationSettings

    @classmethod
    def resources_for(cls, settings: IsolationSettings) -> Resources:
        return Resources(device=settings.device, vram_gb=2, env="isolation-check", cpu_fallback=settings.cpu_fallback)

    def run(self, request: MusicRequest, workdir: Path) -> MusicResult:
        response = run_in_env("isolation-check", self.name, self.settings.model_dump(), request.model_dump(), workdir)
        wav = workdir / "silence.wav"
        soundfile.write(wav, [0.0] * 4800, 48000)
        return MusicResult(wav=wav, duration_s=0.1, description=f"six {response.result['six']}, device setting {response.result['settings'].get('device')}")


@pytest.mark.skipif(not NO_GPU_HERE, reason="this machine has an NVIDIA GPU")
def test_a_cuda_engine_falls_back_to_the_cpu_only_where_allowed():
    envs.build("isolation-check", log=lambda line: None)
    request = MusicRequest(prompt="isolation")
    with pytest.raises(EngineError, match="no NVIDIA GPU was found"):
        place(cuda_spec(), GpuSettings(), gpu.list_gpus())
    settings = GpuSettings(cpu_fallback=True)
    with running(StepContext("music", "fallback-test")):
        output = run_engine_step(place(cuda_spec(), settings, gpu.list_gpus()), request, settings)
    assert output.result.description == "six 1.15.0, device setting cpu"  # the runner was told to use the CPU
    assert output.record.device == "cpu"
    assert output.record.gpu == GpuUsage()  # no GPU-seconds on this machine


# --- scheduling on a real Prefect API -------------------------------------------------------------------


def limit_of(name: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).limit


def test_gpu_limits_are_created_and_updated(prefect_api):
    created = gpu.ensure_gpu_limits([A_T4.model_copy(update={"index": 7})])
    assert created == {"gpu-7-vram-gb": 15} and limit_of("gpu-7-vram-gb") == 15
    gpu.ensure_gpu_limits([A_T4.model_copy(update={"index": 7, "memory_total_bytes": 24 * 1024**3})])
    assert limit_of("gpu-7-vram-gb") == 24
    assert gpu.ensure_gpu_limits([]) == {}


def test_slots_need_an_existing_limit_and_room_in_it(prefect_api):
    with pytest.raises(EngineError, match="Prefect limit 'gpu-5-vram-gb'.*must be created before acquiring"), gpu.gpu_slots(2, gpu_index=5):
        pass
    gpu.ensure_gpu_limits([A_T4.model_copy(update={"index": 6})])
    with pytest.raises(EngineError, match="cannot take 16 GB of GPU 6's slots.*greater than the limit"), gpu.gpu_slots(15.2, gpu_index=6):
        pass
    with gpu.gpu_slots(0.3, gpu_index=6) as held:
        assert held == 1  # a step that declares less than 1 GB still takes a slot


NEEDS_GB = (4, 8, 12, 16, 6, 10, 2, 20)
LIMIT_GB = 24


def test_eight_concurrent_tasks_never_oversubscribe_the_gpu(prefect_api):
    gpu.ensure_gpu_limits([GpuInfo(index=3, name="test", uuid="GPU-3", memory_total_bytes=LIMIT_GB * 1024**3, driver_version="-")])
    intervals: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    @task
    def occupy(gb: int) -> None:
        with gpu.gpu_slots(gb, gpu_index=3):
            started = time.monotonic()
            time.sleep(0.6)
            with lock:
                intervals.append((started, time.monotonic(), gb))

    @flow
    def eight_steps() -> None:
        futures = [occupy.submit(gb) for gb in NEEDS_GB]
        for future in futures:
            future.result()

    began = time.monotonic()
    eight_steps()
    elapsed = time.monotonic() - began
    assert sorted(gb for _, _, gb in intervals) == sorted(NEEDS_GB)
    # At every moment a step started, the steps running then hold at most the GPU's 24 GB.
    peak_gb, peak_steps = 0, 0
    for instant, _, _ in intervals:
        running = [gb for start, end, gb in intervals if start <= instant < end]
        peak_gb, peak_steps = max(peak_gb, sum(running)), max(peak_steps, len(running))
    assert peak_gb <= LIMIT_GB
    assert peak_steps >= 2  # some ran side by side ...
    assert max(s for s, _, _ in intervals) - min(s for s, _, _ in intervals) >= 0.6  # ... and some had to wait
    print(f"8 GPU tasks, {sum(NEEDS_GB)} GB on a {LIMIT_GB} GB limit: {elapsed:.1f} s, peak {peak_gb} GB, {peak_steps} at once")


def test_a_cuda_step_holds_slots_and_the_guard_catches_a_runner_on_the_cpu(prefect_api):
    """The GPU path of a step as far as it runs here: slots on the real API, the runner observed, the guard."""
    envs.build("isolation-check", log=lambda line: None)
    gpu.ensure_gpu_limits([A_T4.model_copy(update={"index": 2})])
    spec = cuda_spec()
    workdir = envs.podforge_home() / "guard-test"
    step_of = {"engine": spec.name, "device": spec.resources.device, "vram_gb": spec.resources.vram_gb}
    with gpu.gpu_step(**step_of, settings=GpuSettings(gpu_index=2, guard="warn")) as step:
        run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, workdir)  # it reports device "cpu"
    assert step.runner_env() == {}  # NVML lists no GPU here: no UUID to pin, the environment passes on unchanged
    pinned = gpu.GpuStep("cuda", spec.resources.vram_gb, 2, [A_T4.model_copy(update={"index": i, "uuid": f"GPU-{i}"}) for i in range(3)])
    assert pinned.runner_env() == {"CUDA_VISIBLE_DEVICES": "GPU-2"}
    assert step.reported_device == "cpu"
    assert step.usage.flagged == "asked for CUDA but the runner reported that it ran on 'cpu'"
    failing = gpu.gpu_step(**step_of, settings=GpuSettings(gpu_index=2, guard="fail"))
    with pytest.raises(EngineError, match="engine 'isolation' asked for CUDA but the runner reported"), failing:
        run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, workdir)
    with gpu.gpu_step(**step_of, settings=GpuSettings(gpu_index=2, guard="off")) as quiet:
        run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, workdir)
    assert quiet.usage.flagged is None


def test_runner_output_reaches_the_prefect_task_log(prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    envs.build("isolation-check", log=lambda line: None)

    @task
    def in_env(workdir: str) -> str:
        return run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, Path(workdir)).result["six"]

    @flow
    def one_step(workdir: str):
        from prefect.runtime import flow_run

        return in_env(workdir), flow_run.id

    six_version, flow_run_id = one_step(str(envs.podforge_home() / "log-test"))
    assert six_version == "1.15.0"
    deadline = time.monotonic() + 30
    while True:  # logs reach the API in batches
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        lines = [log.message for log in logs if log.task_run_id is not None]
        if any("[isolation-check:iso] isolation-check: engine=iso mode=versions" in line for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any("[isolation-check:iso] isolation-check: engine=iso mode=versions" in line for line in lines), lines
