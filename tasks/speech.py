"""Speech: one task per line, each voice resolved to an engine."""

from __future__ import annotations

from podforge.config import GpuSettings
from podforge.engines.base import EngineSpec, SpeechRequest
from podforge.steps import StepOutput, run_engine_step, step_task


@step_task("speak-line", task_run_name="speak-{speaker}")
def speak_line(text: str, speaker: str, voice: str, engine: EngineSpec, language: str, gpu: GpuSettings) -> StepOutput:
    """``speaker`` names the task run only: the same words in the same voice are cached once."""
    return run_engine_step("speech", engine, SpeechRequest(text=text, language=language, voice=voice), gpu)
