"""The episode picture: talking heads when every host has a portrait, else the audiogram."""

from __future__ import annotations

from pathlib import Path

from podforge.config import EpisodeTiming, GpuSettings, VideoSettings
from podforge.engines.base import AvatarRequest, EngineSpec, VideoRequest, VideoResult
from podforge.engines.registry import load_engine
from podforge.media.encoders import EncoderChoice
from podforge.media.layout import compose_layout, host_video_size
from podforge.steps import StepOutput, current_step, run_engine_step, step_task
from podforge.timing import alignment_for, turns_from_lines


@step_task("video", version="2", key=("master", "captions.result.ass", "title", "show", "engine", "frame", "encoder", "ffmpeg"))
def video(master: StepOutput, captions: StepOutput, title: str, show: str, engine: EngineSpec, frame: VideoSettings, encoder: EncoderChoice, ffmpeg: str | None, gpu: GpuSettings) -> StepOutput:
    """The audiogram: title card, live waveform, burned-in captions over the finished master."""
    request = VideoRequest(
        audio=master.result.wav,
        captions_ass=captions.result.ass,
        title=title,
        show=show,
        duration_s=master.result.duration_s,
        width=frame.width,
        height=frame.height,
        fps=frame.fps,
        encoder=encoder.name,
        encoder_options=encoder.options,
        ffmpeg=ffmpeg,
    )
    output = run_engine_step(engine, request, gpu)
    fallback = output.result.notes.get("encoder_fallback")  # the engine falls back to libx264 when NVENC fails mid-render
    output.record.notes.update(encoder=output.result.encoder, encoder_reason=f"{encoder.reason}; {fallback}" if fallback else encoder.reason)
    return output


@step_task("avatar", version="3", key=("host", "portrait", "dialogue", "engine", "timing", "frame", "encoder"), task_run_name="avatar-{speaker}")
def avatar(speaker: str, host: int, portrait: Path, dialogue: StepOutput, engine: EngineSpec, timing: EpisodeTiming, frame: VideoSettings, hosts: int, encoder: EncoderChoice, gpu: GpuSettings) -> StepOutput:
    """One host's talking head over the whole episode; it starts as soon as the dialogue exists.

    An engine that can returns an animation instead of a video: the layout renders it into the picture."""
    track = dialogue.result
    width, height = host_video_size(frame.layout, hosts, frame.width, frame.height)
    request = AvatarRequest(
        speaker=speaker,
        portrait=portrait,
        audio=track.wav,
        audio_offset_s=timing.intro_s,
        alignment=alignment_for(host, track.timeline.shifted(timing.intro_s)),
        duration_s=timing.episode_s(track.timeline.duration_s),
        width=width,
        height=height,
        fps=frame.fps,
        encoder=encoder.name,
        encoder_options=encoder.options,
        seed=host,
        deliver="animation",
    )
    output = run_engine_step(engine, request, gpu)
    output.record.notes.update(output.result.notes)  # what the engine decided and checked (lip-sync self-check…)
    if "encoder_fallback" in output.result.notes:  # NVENC failed in the engine's own encode
        output.record.notes.update(encoder=output.result.encoder, encoder_reason=f"{encoder.reason}; {output.result.notes['encoder_fallback']}")
    return output


@step_task("layout", version="3", key=("avatars", "engine", "dialogue", "captions.result.ass", "timing", "frame", "encoder", "ffmpeg"))
def layout(avatars: list[StepOutput], engine: EngineSpec, dialogue: StepOutput, captions: StepOutput, timing: EpisodeTiming, frame: VideoSettings, encoder: EncoderChoice, ffmpeg: str | None) -> StepOutput:
    """The talking heads (``avatars[host]``) side by side, the speaker highlighted, or cut to the speaker; captions burned in.

    A host delivered as an animation is rendered by its ``engine`` straight into the picture: the
    episode's picture is encoded once."""
    step = current_step()
    duration_s = timing.episode_s(dialogue.result.timeline.duration_s)
    out = step.workdir / "video.mp4"
    pictures = [load_engine(engine).frames(avatar.result) if avatar.result.animation else avatar.result.video for avatar in avatars]
    made = compose_layout(
        pictures,
        turns_from_lines(dialogue.result.timeline.shifted(timing.intro_s), duration_s),
        out,
        duration_s=duration_s,
        width=frame.width,
        height=frame.height,
        fps=frame.fps,
        mode=frame.layout,
        encoder=encoder.name,
        encoder_options=encoder.options,
        captions_ass=captions.result.ass,
        binary=ffmpeg,
    )
    result = VideoResult(video=out, encoder=made.encoder, frames=made.frames)
    reason = f"{encoder.reason}; {made.encoder_fallback}" if made.encoder_fallback else encoder.reason
    return StepOutput(record=step.record("layout", encoder=made.encoder, encoder_reason=reason, layout=frame.layout), result=result)
