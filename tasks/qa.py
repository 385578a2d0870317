"""Speech QA: the recogniser hears each synthesised line; a bad line is synthesised again (see podforge.qa)."""

from __future__ import annotations

from pathlib import Path

from podforge.config import GpuSettings, QaSettings
from podforge.engines.base import AsrRequest, EngineSpec
from podforge.engines.registry import engine_class, load_engine
from podforge.gpu import gpu_step
from podforge.planning import LinePlan
from podforge.qa import check_line
from podforge.steps import StepOutput, current_step, step_task
from tasks.speech import speech


@step_task("qa", version="1", key=("line.index", "line.host", "line.text", "clip", "voice", "asr", "settings", "language"), task_run_name="qa-{line.speaker}")
def check_speech(line: LinePlan, clip: StepOutput, voice: EngineSpec, asr: EngineSpec, settings: QaSettings, language: str, gpu: GpuSettings) -> StepOutput:
    """The clip ``line`` keeps after QA. Retakes are ``speech`` steps keyed by their take number."""
    step = current_step()
    recogniser = load_engine(asr)

    def transcribe(wav: Path):
        return recogniser.run(AsrRequest(audio=wav, language=language), step.workdir)

    def synthesise(take: int):
        return speech(text=line.text, speaker=line.speaker, voice=voice, language=language, gpu=gpu, take=take, line=line.source_line).result

    with gpu_step(asr.name, asr.resources.device, asr.resources.vram_gb, gpu) as telemetry:
        checked = check_line(
            line=line.index, host=line.host, text=line.text, language=language, first=clip.result,
            synthesise=synthesise, transcribe=transcribe, settings=settings, can_retake=engine_class(voice.impl).retakes,
        )
    # the whole check goes in the record: podforge.qa.summarise(LineCheck(**notes) ...) makes the host table
    record = step.record(asr.name, device=telemetry.reported_device or asr.resources.device, gpu=telemetry.usage, **checked.check.model_dump())
    return StepOutput(record=record, result=checked)
