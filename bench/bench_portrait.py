"""Benchmark: the offline talking-portrait animator and the two-host layout, frames per second on this CPU.

    .venv/bin/python bench/bench_portrait.py [--seconds 20] [--episode-minutes 10]

The portrait is ``skimage.data.astronaut()``; the speech is Piper's (synthesised once, not timed). For
each size it times the whole engine run (face detection, rig, rendering, libx264 ``veryfast`` encoding
through the pipe) and the rendering alone, then the side-by-side layout of two hosts at 1280×720. The last
columns put the numbers in an episode's terms: wall seconds per second of video (real-time factor) and
the seconds an episode of ``--episode-minutes`` with two hosts spends animating.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SENTENCES = (
    "A T4 card in the cloud rents for about fifty-three cents an hour, which is cheap if the card is busy. "
    "The trap is a job that asks for CUDA, hears that CUDA is available, and then runs on the processor anyway. "
    "Every line of this episode is its own task, so a failure late in the run never costs the early work. "
)


def speech(workdir: Path, seconds: float):
    from podforge.engines.base import SpeechRequest
    from podforge.engines.piper import PiperEngine

    text = SENTENCES * max(1, int(seconds / 18) + 1)
    return PiperEngine().run(SpeechRequest(text=text), workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="video length per run")
    parser.add_argument("--episode-minutes", type=float, default=10.0)
    args = parser.parse_args()

    import skimage.data
    from PIL import Image

    from podforge.engines.avatar_contract import AvatarRequest, SpeakerAlignment, SpeakerTurn
    from podforge.engines.portrait import PortraitEngine, PortraitRig, blink_curve, head_motion, mouth_curves, speech_envelope
    from podforge.media.layout import compose_layout, host_video_size
    from podforge.media.portraits import load_portrait

    with tempfile.TemporaryDirectory(prefix="podforge-bench-portrait-") as folder:
        work = Path(folder)
        portrait_path = work / "astronaut.png"
        Image.fromarray(skimage.data.astronaut()).save(portrait_path)
        spoken = speech(work, args.seconds)
        seconds = min(args.seconds, spoken.duration_s)
        alignment = SpeakerAlignment(phonemes=spoken.alignment.phonemes)
        fps = 25
        rows = []
        videos = {}
        for width, height in ((512, 512), (1280, 720), host_video_size("side_by_side", 2, 1280, 720)):
            request = AvatarRequest(speaker="ALEX", portrait=portrait_path, audio=spoken.wav, alignment=alignment, duration_s=seconds, width=width, height=height, fps=fps, encoder_options={"preset": "veryfast", "crf": "23"})
            out = work / f"{width}x{height}"
            out.mkdir()
            started = time.perf_counter()
            result = PortraitEngine({}).run(request, out)
            engine_s = time.perf_counter() - started
            videos[(width, height)] = result.video

            rig = PortraitRig(load_portrait(portrait_path, "ALEX"), width, height)
            frames = result.frames
            curves = mouth_curves(alignment, speech_envelope(spoken.wav, 0.0, fps, frames), fps)
            rng = np.random.default_rng(0)
            closure, motion = blink_curve(frames, fps, rng), head_motion(frames, fps, rng, curves.energy)
            started = time.perf_counter()
            for i in range(frames):
                rig.render(float(curves.openness[i]), float(curves.width[i]), float(closure[i]), float(motion.angle_deg[i]), float(motion.shift_x[i]), float(motion.shift_y[i]), float(motion.scale[i]))
            render_s = time.perf_counter() - started
            rows.append((f"portrait {width}×{height}", frames, frames / engine_s, frames / render_s, engine_s / seconds))

        tile = host_video_size("side_by_side", 2, 1280, 720)
        turns = [SpeakerTurn(speaker="ALEX", start_s=0.0, end_s=seconds / 2), SpeakerTurn(speaker="SAM", start_s=seconds / 2, end_s=seconds)]
        started = time.perf_counter()
        frames = compose_layout({"ALEX": videos[tile], "SAM": videos[tile]}, turns, work / "layout.mp4", duration_s=seconds, width=1280, height=720, encoder_options={"preset": "veryfast", "crf": "23"})
        layout_s = time.perf_counter() - started
        rows.append(("layout 2 hosts 1280×720", frames, frames / layout_s, float("nan"), layout_s / seconds))

    episode_s = args.episode_minutes * 60
    print(f"offline talking portrait, {seconds:.1f} s of video at {fps} fps; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'what':<28} {'frames':>6} {'fps (engine)':>13} {'fps (render)':>13} {'wall/video':>11} {f'2 hosts, {args.episode_minutes:g} min':>16}")
    for name, frames, engine_fps, render_fps, rtf in rows:
        hosts = 1 if name.startswith("layout") else 2
        per_episode = hosts * rtf * episode_s
        render = "" if np.isnan(render_fps) else f"{render_fps:13.1f}"
        print(f"{name:<28} {frames:>6} {engine_fps:13.1f} {render:>13} {rtf:11.2f} {per_episode:14.0f} s")
    print("fps (engine): detection + rendering + libx264 through the pipe; fps (render): the warps alone.")
    print("the last column: seconds an episode spends on this step (each host's video, or the layout once).")


if __name__ == "__main__":
    main()
