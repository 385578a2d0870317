"""The episode picture, rendered by the configured video engine (default: the audiogram)."""

from __future__ import annotations

from podforge.config import GpuSettings, VideoSettings
from podforge.engines.base import EngineSpec, VideoRequest
from podforge.media.encoders import EncoderChoice
from podforge.script import EpisodeMeta
from podforge.steps import StepOutput, run_engine_step, step_task


@step_task("render-video")
def render_video(master: StepOutput, captions: StepOutput, meta: EpisodeMeta, engine: EngineSpec, video: VideoSettings, encoder: EncoderChoice, ffmpeg_binary: str | None, gpu: GpuSettings) -> StepOutput:
    request = VideoRequest(
        audio=master.result.wav,
        captions_ass=captions.result.ass,
        title=meta.title,
        show=meta.show,
        duration_s=master.result.duration_s,
        width=video.width,
        height=video.height,
        fps=video.fps,
        encoder=encoder.name,
        encoder_options=encoder.options,
        ffmpeg=ffmpeg_binary,
    )
    output = run_engine_step("video", engine, request, gpu)
    used = output.result.encoder  # the engine falls back to libx264 when NVENC fails mid-render
    reason = encoder.reason if used == encoder.name else f"{encoder.reason}; {encoder.name} failed during the render, {used} used"
    output.record.notes.update(encoder=used, encoder_reason=reason)
    return output
