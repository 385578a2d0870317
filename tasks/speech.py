"""Speech: one task per line, in the voice the plan cast for its host."""

from __future__ import annotations

from podforge.config import GpuSettings
from podforge.engines.base import EngineSpec, SpeechRequest
from podforge.errors import EngineError, PodforgeError, squash
from podforge.steps import StepOutput, run_engine_step, step_task


@step_task("speech", version="3", key=("text", "voice", "language", "take"), task_run_name="speech-{speaker}")
def speech(text: str, speaker: str, voice: EngineSpec, language: str, gpu: GpuSettings, take: int = 0, line: int = 0, source: str = "") -> StepOutput:
    """``speaker``, ``line`` and ``source`` (where the line is in the script) name the task run and its errors only:
    the same words in the same voice are made once, whoever says them. ``take`` > 0 is a speech QA retake:
    new noise, its own key."""
    try:
        return run_engine_step(voice, SpeechRequest(text=text, language=language, take=take), gpu)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as this line's, in one line
        reason = exc.message if isinstance(exc, PodforgeError) else f"{type(exc).__name__}: {exc}"
        raise EngineError(f"{speaker}'s line could not be spoken by {voice.name!r}: {squash(reason)}", file=source or None, field=f"line {line}" if line else None) from exc
