"""The episode picture: talking heads when every host has a portrait, else the audiogram."""

from __future__ import annotations

from pathlib import Path

from podforge.config import GpuSettings, MixSettings, VideoSettings
from podforge.engines.avatar_contract import AvatarRequest, alignment_for, turns_from_lines
from podforge.engines.base import EngineSpec, VideoRequest, VideoResult
from podforge.media.encoders import EncoderChoice
from podforge.media.layout import compose_layout, host_video_size
from podforge.script import EpisodeMeta
from podforge.steps import StepContext, StepOutput, run_engine_step, step_task


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


@step_task("avatar", task_run_name="avatar-{speaker}")
def animate_host(speaker: str, portrait: Path, dialogue: StepOutput, engine: EngineSpec, mix: MixSettings, video: VideoSettings, hosts: int, encoder: EncoderChoice, gpu: GpuSettings) -> StepOutput:
    """One host's talking head over the whole episode; it starts as soon as the dialogue exists."""
    track = dialogue.result
    width, height = host_video_size(video.layout, hosts, video.width, video.height)
    request = AvatarRequest(
        speaker=speaker,
        portrait=portrait,
        audio=track.wav,
        audio_offset_s=mix.intro_s,
        alignment=alignment_for(speaker, track.timeline.shifted(mix.intro_s)),
        duration_s=mix.episode_s(track.timeline.duration_s),
        width=width,
        height=height,
        fps=video.fps,
        encoder=encoder.name,
        encoder_options=encoder.options,
    )
    return run_engine_step("avatar", engine, request, gpu)


@step_task("layout")
def render_layout(speakers: list[str], avatars: list[StepOutput], dialogue: StepOutput, captions: StepOutput, mix: MixSettings, video: VideoSettings, encoder: EncoderChoice, ffmpeg_binary: str | None) -> StepOutput:
    """The talking heads side by side (the speaker highlighted) or cut to the speaker, captions burned in."""
    step = StepContext("video", "layout", {"avatars": avatars, "dialogue": dialogue, "captions": captions, "mix": mix, "video": video, "encoder": encoder})
    duration_s = mix.episode_s(dialogue.result.timeline.duration_s)
    out = step.workdir / "video.mp4"
    frames = compose_layout(
        {speaker: avatar.result.video for speaker, avatar in zip(speakers, avatars, strict=True)},
        turns_from_lines(dialogue.result.timeline.shifted(mix.intro_s), duration_s),
        out,
        duration_s=duration_s,
        width=video.width,
        height=video.height,
        fps=video.fps,
        mode=video.layout,
        encoder=encoder.name,
        encoder_options=encoder.options,
        captions_ass=captions.result.ass,
        binary=ffmpeg_binary,
    )
    result = VideoResult(video=out, encoder=encoder.name, frames=frames)
    return StepOutput(record=step.record(encoder=encoder.name, encoder_reason=encoder.reason, layout=video.layout), result=result)
