"""The music bed, made in parallel with speech: a loop that the mix repeats under the episode."""

from __future__ import annotations

from podforge.config import GpuSettings
from podforge.engines.base import EngineSpec, MusicRequest
from podforge.steps import StepOutput, run_engine_step, step_task


@step_task("music", version="2", key=("request", "engine"))
def music(request: MusicRequest, engine: EngineSpec, gpu: GpuSettings) -> StepOutput:
    output = run_engine_step(engine, request, gpu)
    output.record.notes.update(output.result.notes)  # e.g. the LoRA adapter's name and hash, for the manifest
    return output
