"""The episode DAG: parse → plan → speech (one task per line) ∥ music → dialogue → mix ∥ captions ∥ a talking head per
host → the picture (layout, or the audiogram) → mux → publish.

Every step is a Prefect task keyed by the content of what it depends on, so a re-run after a failure redoes
only what failed. Tasks receive futures; Prefect runs each as soon as its inputs exist.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from podforge.config import load_config
from podforge.dialogue import LineSlot
from podforge.gpu import ensure_gpu_limits, list_gpus
from podforge.manifest import EpisodeManifest
from podforge.media.encoders import choose_h264_encoder
from podforge.progress import ProgressBoard
from podforge.prefect_env import episode_task_runner
from tasks.captions import captions
from tasks.dialogue import dialogue
from tasks.mix import mix
from tasks.music import music
from tasks.mux import mux
from tasks.publish import publish
from tasks.script import make_plan, parse
from tasks.speech import speech
from tasks.video import avatar, layout, video


@flow(name="episode", log_prints=True, task_runner=episode_task_runner())
def episode(script: str = "", script_text: str = "", config: list[str] | None = None, overrides: dict[str, Any] | None = None, out_dir: str = "output") -> EpisodeManifest:
    """Produce one episode from a script file (``script``), or from ``script_text`` when it is given."""
    cfg = load_config(config or [], overrides)
    gpus = list_gpus()
    ensure_gpu_limits(gpus)  # one concurrency limit per GPU, its slots = VRAM in GB
    plan = make_plan(script=parse(script=script, script_text=script_text), config=cfg, gpus=gpus)
    lines, timing, frame = plan.lines, plan.timing, cfg.video
    encoder = choose_h264_encoder(frame.encoder, cfg.ffmpeg, x264_preset=frame.x264_preset, crf=frame.crf)

    bed = music.submit(request=plan.music_request, engine=plan.music, gpu=cfg.gpu)
    clips = speech.map(
        text=[line.text for line in lines],
        speaker=[line.speaker for line in lines],
        voice=[plan.hosts[line.host].speech for line in lines],
        language=unmapped(plan.language),
        gpu=unmapped(cfg.gpu),
    )
    track = dialogue.submit(clips=clips, slots=[LineSlot(host=line.host, chapter=line.chapter, text=line.text) for line in lines], timing=timing)
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
    containers = mux.submit(video=picture, master=master, levels=cfg.mix.levels(), encoding=cfg.publish.encoding(), ffmpeg=cfg.ffmpeg)

    outputs = ProgressBoard(plan.script.slug).follow([bed, *clips, track, master, subtitles, *heads, picture, containers])
    return publish(script=plan.script, outputs=outputs, out_dir=out_dir, settings=cfg.publish, intro_s=timing.intro_s, price_as=cfg.gpu.price_as)
