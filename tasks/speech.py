"""Speech: one task per line, in the voice the plan cast for its host."""

from __future__ import annotations

from podforge.config import GpuSettings
from podforge.engines.base import EngineSpec, SpeechRequest
from podforge.steps import StepOutput, run_engine_step, step_task


@step_task("speech", version="3", key=("text", "voice", "language", "take"), task_run_name="speech-{speaker}")
def speech(text: str, speaker: str, voice: EngineSpec, language: str, gpu: GpuSettings, take: int = 0) -> StepOutput:
    """``speaker`` names the task run only: the same words in the same voice are made once, whoever says them.

    ``take`` > 0 is a speech QA retake: new noise, its own key.
    """
    return run_engine_step(voice, SpeechRequest(text=text, language=language, take=take), gpu)
