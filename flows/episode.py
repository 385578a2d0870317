"""The episode DAG: parse → plan → speech (one task per line) → speech QA (per line) ∥ music → dialogue → mix ∥
captions ∥ a talking head per host → the picture (layout, or the audiogram) ∥ the delivered audio (AAC, MP3,
each measured) → mux → publish.

Every step is a Prefect task keyed by the content of what it depends on, so a re-run after a failure redoes
only what failed. Tasks receive futures; Prefect runs each as soon as its inputs exist.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped

from podforge.config import load_config
from podforge.dialogue import LineSlot
from podforge.gpu import ensure_gpu_limits, list_gpus
from podforge.manifest import EpisodeManifest
from podforge.media.encoders import choose_h264_encoder
from podforge.output import check_destination
from podforge.progress import ProgressBoard
from podforge.prefect_env import episode_task_runner
from podforge.workers import with_engine_workers
from tasks.audio import audio
from tasks.captions import captions
from tasks.dialogue import dialogue
from tasks.mix import mix
from tasks.music import music
from tasks.mux import mux
from tasks.publish import publish
from tasks.qa import check_speech
from tasks.script import make_plan, parse
from tasks.speech import speech
from tasks.video import avatar, layout, video


@flow(name="episode", log_prints=True, task_runner=episode_task_runner())
@with_engine_workers  # one warm worker per engine for this run, stopped when it ends
def episode(script: str = "", script_text: str = "", config: list[str] | None = None, overrides: dict[str, Any] | None = None, out_dir: str = "output") -> EpisodeManifest:
    """Produce one episode from a script file (``script``), or from ``script_text`` when it is given.

    Args:
        script: Path of the episode script (Markdown or text with YAML front matter) on the machine that
            runs the flow; a relative path starts at the Podforge checkout, e.g. `configs/episodes/demo.md`.
            Ignored when `script_text` is given.
        script_text: A whole script pasted here, front matter included. When given, it is used instead of
            `script`.
        config: Extra YAML config files, merged over `configs/default.yaml` in this order (paths on the
            machine that runs the flow).
        overrides: Config values merged last, as a mapping, e.g. `{"speech": "joe"}` (what the CLI's
            `--speech`, `--music` and `--video` set).
        out_dir: Output folder: the episode goes to `out_dir/<slug>/` and the show's feed to
            `out_dir/<show>/feed.xml`.
    """
    cfg = load_config(config or [], overrides)
    gpus = list_gpus()
    ensure_gpu_limits(gpus)  # one concurrency limit per GPU, its slots = VRAM in GB
    plan = make_plan(script=parse(script=script, script_text=script_text), config=cfg, gpus=gpus)
    check_destination(out_dir, plan.script)  # a full, read-only or taken output folder fails before any speech
    for warning in plan.warnings:
        get_run_logger().info("warning: %s", warning)  # the report lists them too
    lines, timing, frame = plan.lines, plan.timing, cfg.video

    bed = music.submit(request=plan.music_request, engine=plan.music, gpu=cfg.gpu)
    clips = speech.map(
        text=[line.text for line in lines],
        speaker=[line.speaker for line in lines],
        line=[line.source_line for line in lines],
        source=unmapped(plan.script.source),
        voice=[plan.hosts[line.host].speech for line in lines],
        language=unmapped(plan.language),
        gpu=unmapped(cfg.gpu),
    )
    encoder = choose_h264_encoder(frame.encoder, cfg.ffmpeg, x264_preset=frame.x264_preset, crf=frame.crf)  # probes ffmpeg while the lines are spoken
    checked = []
    if plan.asr:  # the recogniser hears every line; a bad one is synthesised again (qa: {asr: off} skips it)
        checked = check_speech.map(
            line=lines,
            clip=clips,
            voice=[plan.hosts[line.host].speech for line in lines],
            asr=unmapped(plan.asr),
            settings=unmapped(cfg.qa),
            language=unmapped(plan.language),
            gpu=unmapped(cfg.gpu),
        )
    track = dialogue.submit(clips=checked or clips, slots=[LineSlot(host=line.host, chapter=line.chapter, text=line.text) for line in lines], timing=timing)
    master = mix.submit(dialogue=track, bed=bed, levels=cfg.mix.levels(), timing=timing, ffmpeg=cfg.ffmpeg)
    subtitles = captions.submit(dialogue=track, hosts=plan.host_names, timing=timing, frame=(frame.width, frame.height))
    if plan.talking_heads:
        heads = [
            avatar.submit(speaker=host.name, host=host.position, portrait=host.portrait, dialogue=track, engine=plan.avatar, timing=timing, frame=frame, hosts=len(plan.hosts), encoder=encoder, gpu=cfg.gpu)
            for host in plan.hosts
        ]
        picture = layout.submit(avatars=heads, engine=plan.avatar, dialogue=track, captions=subtitles, timing=timing, frame=frame, encoder=encoder, ffmpeg=cfg.ffmpeg)
    else:
        heads = []
        picture = video.submit(master=master, captions=subtitles, title=plan.script.meta.title, show=plan.script.meta.show, engine=plan.video, frame=frame, encoder=encoder, ffmpeg=cfg.ffmpeg, gpu=cfg.gpu)
    sound = audio.submit(master=master, levels=cfg.mix.levels(), encoding=cfg.publish.encoding(), ffmpeg=cfg.ffmpeg)  # beside the picture
    containers = mux.submit(video=picture, audio=sound, levels=cfg.mix.levels(), ffmpeg=cfg.ffmpeg)

    outputs = ProgressBoard(plan.script.slug).follow([bed, *clips, *checked, track, master, subtitles, *heads, picture, sound, containers])
    return publish(plan=plan, outputs=outputs, out_dir=out_dir, settings=cfg.publish, price_as=cfg.gpu.price_as, qa=cfg.qa)
