"""The episode picture, rendered by the configured video engine (default: the audiogram)."""

from __future__ import annotations

from podforge.config import VideoSettings
from podforge.engines.base import EngineSpec, VideoRequest
from podforge.media.encoders import EncoderChoice
from podforge.script import EpisodeMeta
from podforge.steps import StepOutput, run_engine_step, step_task


@step_task("render-video")
def render_video(master: StepOutput, captions: StepOutput, meta: EpisodeMeta, engine: EngineSpec, video: VideoSettings, encoder: EncoderChoice) -> StepOutput:
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
    )
    output = run_engine_step("video", engine, request)
    output.record.notes.update(encoder=encoder.name, encoder_reason=encoder.reason)
    return output
