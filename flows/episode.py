"""The episode DAG: script → speech (one task per line) ∥ music bed → dialogue → mix → captions →
video (a talking head per host, laid out; or the audiogram) → mux → publish.

Every step is a Prefect task cached by content, so a re-run after a failure redoes only what failed.
Tasks receive futures; Prefect runs each as soon as its inputs exist (music beside speech, captions
beside the mix, the talking heads beside both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped

from podforge.casting import cast_voices, engine_for
from podforge.config import REPO_ROOT, load_config
from podforge.gpu import ensure_gpu_limits, list_gpus
from podforge.manifest import EpisodeManifest
from podforge.media.encoders import choose_h264_encoder
from podforge.progress import ProgressBoard
from tasks.captions import write_captions
from tasks.dialogue import assemble_dialogue
from tasks.mix import mix_master
from tasks.music import make_music_bed
from tasks.mux import mux
from tasks.publish import publish
from tasks.script import read_script
from tasks.speech import speak_line
from tasks.video import animate_host, render_layout, render_video

DEMO_SCRIPT = str(REPO_ROOT / "configs" / "episodes" / "demo.md")


@flow(name="episode", log_prints=True)
def episode(
    script: str = DEMO_SCRIPT,
    script_text: str = "",
    config: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: str = "output",
) -> EpisodeManifest:
    """Produce one episode from a script file (``script``), or from ``script_text`` when it is given."""
    cfg = load_config([Path(p) for p in config or []], overrides)
    parsed = read_script(script, script_text)
    gpus = list_gpus()
    ensure_gpu_limits(gpus)  # one concurrency limit per GPU, its slots = VRAM in GB
    cast = cast_voices(parsed, cfg, gpus)
    lines = parsed.lines

    bed = make_music_bed.submit(parsed.meta.music or cfg.music.default_prompt, cfg.music.bars, cfg.music.seed, engine_for(cfg, cfg.use.music, "music", gpus), cfg.gpu)
    speech = speak_line.map(
        [line.text for line in lines],
        [line.speaker for line in lines],
        [cast[line.speaker].voice for line in lines],
        [cast[line.speaker].engine for line in lines],
        unmapped(parsed.meta.language),
        unmapped(cfg.gpu),
    )
    dialogue = assemble_dialogue.submit(lines, speech, cfg.mix)
    master = mix_master.submit(dialogue, bed, cfg.mix, cfg.ffmpeg)
    captions = write_captions.submit(dialogue, cfg.mix, cfg.video)
    encoder = choose_h264_encoder(cfg.video.encoder, cfg.ffmpeg, x264_preset=cfg.video.x264_preset, crf=cfg.video.crf)
    portraits = parsed.portraits  # speaker -> image, when every host has one
    if portraits:
        avatar_engine = engine_for(cfg, cfg.use.avatar, "avatar", gpus)
        avatars = [animate_host.submit(speaker, image, dialogue, avatar_engine, cfg.mix, cfg.video, len(portraits), encoder, cfg.gpu) for speaker, image in portraits.items()]
        video = render_layout.submit(list(portraits), avatars, dialogue, captions, cfg.mix, cfg.video, encoder, cfg.ffmpeg)
    else:
        avatars = []
        video = render_video.submit(master, captions, parsed.meta, engine_for(cfg, cfg.use.video, "video", gpus), cfg.video, encoder, cfg.ffmpeg, cfg.gpu)
    containers = mux.submit(video, master, cfg.publish, cfg.ffmpeg)

    steps = ProgressBoard(parsed.slug).follow([bed, *speech, dialogue, master, captions, *avatars, video, containers])
    return publish(parsed, steps, out_dir, cfg.mix.intro_s, cfg.publish)
