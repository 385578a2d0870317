"""Real engines on warm workers: MusicGen (CI builds its environment) and Coqui (heavy, 7.6 GB), on tiny
random models. Workers are counted by the pid the runner reports in each response, not by timing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from podforge import envs
from podforge.config import GpuSettings, load_config, podforge_home
from podforge.engines.base import MusicRequest
from podforge.engines.registry import resolve_engine
from podforge.planning import place
from podforge.runner import RunnerResponse, observe_runners
from podforge.steps import StepContext, run_engine_step, running
from podforge.workers import engine_workers
from tiny_models import make_tiny_musicgen, make_tiny_vits


class Responses:
    """Keeps every runner response seen in its scope."""

    def __init__(self) -> None:
        self.responses: list[RunnerResponse] = []

    def runner_env(self) -> dict[str, str]:
        return {}

    @contextlib.contextmanager
    def computing(self, pid: int):
        yield

    def runner_finished(self, response: RunnerResponse) -> None:
        self.responses.append(response)


@pytest.mark.timeout(1800)
def test_musicgen_loads_once_and_the_step_records_load_and_compute_seconds(tmp_path: Path) -> None:
    envs.build("musicgen", log=lambda line: None)
    model = make_tiny_musicgen(podforge_home() / "models" / "musicgen-tiny")
    settings = {"model": str(model), "window_s": 1.0, "overlap_s": 0.3, "crossfade_s": 0.2, "top_k": 50}
    config = load_config(overrides={"engines": {"musicgen": {"settings": settings}}})
    spec = place(resolve_engine(config, "musicgen", "music"), GpuSettings(), [])  # no GPU here: the CPU
    recorder = Responses()
    with engine_workers() as pool, observe_runners(recorder):
        with running(StepContext("music", "warm-1")):
            first = run_engine_step(spec, MusicRequest(prompt="calm piano", duration_s=1.0, seed=1), GpuSettings())
        with running(StepContext("music", "warm-2")):
            second = run_engine_step(spec, MusicRequest(prompt="calm piano", duration_s=1.0, seed=2), GpuSettings())
    assert len(pool.started) == 1
    assert [r.worker_pid for r in recorder.responses] == [pool.started[0][1]] * 2
    assert first.record.load_s > 0 and second.record.load_s == 0  # the second bed found the model loaded
    assert first.record.compute_s > 0 and second.record.compute_s > 0
    assert second.record.seconds < first.record.seconds
    assert first.record.device == second.record.device == "cpu"


TWELVE_LINES = "\n".join(f"ALEX: Line {n}, spoken by the one tiny voice of this show." for n in range(1, 13))
SCRIPT = f"---\ntitle: Twelve lines\nhosts:\n  ALEX: {{voice: vits-tiny-local}}\n---\n{TWELVE_LINES}\n"
FAST = "mix: {intro_s: 0.5, outro_s: 0.5}\nvideo: {width: 320, height: 180, fps: 10}\nqa: {asr: off}\n"  # a random voice speaks noise: QA would retake every line


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_a_twelve_line_episode_in_one_coqui_voice_starts_one_worker(prefect_api, tmp_path: Path) -> None:
    from flows.episode import episode

    envs.build("coqui", log=lambda line: None)
    make_tiny_vits(podforge_home() / "models" / "vits-tiny")
    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST)
    recorder = Responses()
    with observe_runners(recorder):  # the flow's tasks inherit the observer (Prefect copies the context)
        manifest = episode(script_text=SCRIPT, config=[str(fast)], out_dir=str(tmp_path / "out"))
    speech = [step for step in manifest.steps if step.step == "speech"]
    assert len(speech) == 12 and {step.engine for step in speech} == {"coqui"}
    assert len(recorder.responses) == 12
    assert len({response.worker_pid for response in recorder.responses}) == 1  # one coqui process, not twelve
    assert sum(response.load_s > 0 for response in recorder.responses) == 1  # one model load, for the first line served
    assert all(response.compute_s > 0 and response.device == "cpu" for response in recorder.responses)
