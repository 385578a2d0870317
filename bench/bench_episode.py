"""Benchmark: a three-minute two-host episode, through the Prefect flow and as a plain loop.

    .venv/bin/python bench/bench_episode.py [--minutes 3] [--rounds 2]

The loop and the first flow render the audiogram; the last variant gives both hosts a portrait
(talking heads, side by side). Each variant runs in a fresh process with an empty cache (PODFORGE_HOME in a
temp folder), so nothing is reused, in alternating rounds (a change in the machine's load hits all of
them). The flows run as ``podforge run`` runs them: Prefect's temporary server launched before the flow's
modules are imported (:func:`~podforge.prefect_server.launch_early`) and used through
:func:`~podforge.prefect_server.prefect_api`, on a Prefect database migrated once before the first round
(a user's database is migrated once per install). Each wall clock starts after its variant's imports.
It reports wall time, real-time factor (wall / episode duration), peak RSS of the process and of its
children (ffmpeg, the Prefect server), and the orchestration overhead (flow − loop, medians).
The flows run with ``qa: {asr: off}``: the loop has no speech QA step (``bench_qa.py`` measures its cost).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SENTENCES = [
    "A T4 card in the cloud rents for about fifty-three cents an hour, which is cheap if the card is busy.",
    "The trap is a job that asks for CUDA, hears that CUDA is available, and then runs on the processor anyway.",
    "Every line of this episode is its own task, so a failure late in the run never costs the early work.",
    "The music bed is generated beside the voices, looped under the whole episode and ducked under speech.",
    "Loudness is measured twice: once to plan the gain, once to apply it linearly to minus sixteen LUFS.",
    "Captions come from the phoneme timing of the voice itself, so they change exactly when the words do.",
]


PORTRAITS = REPO / "configs" / "episodes" / "portraits"


def bench_script(minutes: float, portraits: bool = False) -> str:
    """A two-host script of about ``minutes`` of episode (Piper speaks about 3 words a second)."""
    words_needed = int(minutes * 60 * 3.05)
    lines, words, n = [], 0, 0
    while words < words_needed:
        if n % 8 == 0:
            lines.append(f"## Part {n // 8 + 1}")
        text = SENTENCES[n % len(SENTENCES)]
        lines.append(f"{'ALEX' if n % 2 == 0 else 'SAM'}: {text}")
        words += len(text.split())
        n += 1
    alex, sam = (f", portrait: {name}" if portraits else "" for name in ("alex.jpg", "sam.jpg"))  # copied beside the script
    front = f"---\ntitle: Benchmark episode\nshow: Podforge Bench\nhosts:\n  ALEX: {{voice: joe{alex}}}\n  SAM: {{voice: joe-bright{sam}}}\nmusic: calm lo-fi, 84 bpm\n---\n"
    return front + "\n".join(lines) + "\n"


def run_flow(script: Path, out: Path) -> dict:
    """The flow as ``podforge run`` runs it: its server boots while the flow's modules import."""
    from podforge.prefect_env import configure_prefect_environment, ensure_prefect_home
    from podforge.prefect_server import launch_early

    configure_prefect_environment()
    early = launch_early()
    ensure_prefect_home()
    from flows.episode import episode
    from podforge.prefect_server import prefect_api

    started = time.perf_counter()
    with prefect_api(early):
        manifest = episode(script=str(script), out_dir=str(out), overrides={"qa": {"asr": "off"}})  # the loop does no speech QA
    return {"wall_s": time.perf_counter() - started, "episode_s": manifest.duration_s, "lines": sum(s.step == "speech" for s in manifest.steps)}


def run_loop(script: Path, out: Path) -> dict:
    """The same plan, engine and ffmpeg calls as the flow, in a plain loop: no Prefect, no cache."""
    from podforge.config import load_config
    from podforge.dialogue import LineSlot, assemble
    from podforge.engines.base import SpeechRequest, VideoRequest
    from podforge.engines.registry import load_engine
    from podforge.io import write_text_atomic
    from podforge.media.captions import build_cues, to_ass, to_srt, to_vtt
    from podforge.media.encoders import choose_h264_encoder
    from podforge.media.mixing import mix_and_master
    from podforge.media.mux import deliver, deliver_audio
    from podforge.planning import plan_episode
    from podforge.script import load_script

    started = time.perf_counter()
    cfg = load_config()
    plan = plan_episode(cfg, load_script(script), [])
    work = out / "work"
    work.mkdir(parents=True)
    bed = load_engine(plan.music).run(plan.music_request, work)
    clips = []
    for line in plan.lines:
        line_dir = work / f"line{line.index}"
        line_dir.mkdir()
        clips.append(load_engine(plan.hosts[line.host].speech).run(SpeechRequest(text=line.text, language=plan.language), line_dir))
    track = assemble([LineSlot(host=line.host, chapter=line.chapter, text=line.text) for line in plan.lines], clips, plan.timing, work)
    master = mix_and_master(track.wav, track.timeline.lines, bed.wav, cfg.mix.levels(), plan.timing, work)
    lines = track.timeline.shifted(plan.timing.intro_s)
    end_s = plan.timing.episode_s(track.timeline.duration_s)
    named = build_cues(lines, end_s, names=plan.host_names)
    write_text_atomic(work / "e.srt", to_srt(named))
    write_text_atomic(work / "e.vtt", to_vtt(named))
    ass = write_text_atomic(work / "e.ass", to_ass(build_cues(lines, end_s), cfg.video.width, cfg.video.height))
    encoder = choose_h264_encoder(cfg.video.encoder, cfg.ffmpeg, x264_preset=cfg.video.x264_preset, crf=cfg.video.crf)
    meta = plan.script.meta
    request = VideoRequest(audio=master.wav, captions_ass=ass, title=meta.title, show=meta.show, duration_s=master.duration_s, encoder=encoder.name, encoder_options=encoder.options)
    video = load_engine(plan.video).run(request, work)
    levels = cfg.mix.levels()
    audio = deliver_audio(master.wav, master.loudness, work, target_lufs=levels.target_lufs, peak_limit_db=levels.true_peak_db, aac_bitrate=cfg.publish.aac_bitrate, mp3_bitrate=cfg.publish.mp3_bitrate)
    deliver(video.video, audio, work, target_lufs=levels.target_lufs, peak_limit_db=levels.true_peak_db)
    return {"wall_s": time.perf_counter() - started, "episode_s": master.duration_s, "lines": len(plan.lines)}


class TreeRss:
    """Samples the RSS of this process plus its children (ffmpeg, the Prefect server) every 100 ms."""

    def __init__(self):
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def __enter__(self) -> "TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def child(mode: str, script: Path, out: Path) -> None:
    with TreeRss() as tree:
        result = (run_flow if mode == "flow" else run_loop)(script, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["tree_peak_rss_mb"] = tree.peak_mb
    print("RESULT " + json.dumps(result))


MIGRATE = "from podforge.prefect_server import prefect_api\nwith prefect_api():\n    pass\n"


def migrate(prefect_home: Path) -> None:
    """Create and migrate the Prefect database the flows use (once, as a user's first run does)."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="podforge-bench-migrate-") as scratch:
        env = {**os.environ, "PODFORGE_HOME": scratch, "PREFECT_HOME": str(prefect_home)}
        env.pop("PREFECT_API_URL", None)
        subprocess.run([sys.executable, "-c", MIGRATE], cwd=REPO, env=env, check=True, capture_output=True)


def measure(mode: str, script: Path, prefect_home: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"podforge-bench-{mode}-") as scratch:
        env = {**os.environ, "PODFORGE_HOME": str(Path(scratch) / "home"), "PREFECT_HOME": str(prefect_home)}
        env.pop("PREFECT_API_URL", None)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", mode, str(script), str(Path(scratch) / "out")], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        result["process_s"] = time.perf_counter() - started
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SCRIPT", "OUT"))
    args = parser.parse_args()
    if args.child:
        mode, script, out = args.child
        child(mode, Path(script), Path(out))
        return
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "bench.md"
        script.write_text(bench_script(args.minutes))
        with_portraits = Path(scratch) / "bench-portraits.md"
        with_portraits.write_text(bench_script(args.minutes, portraits=True))
        for name in ("alex.jpg", "sam.jpg"):  # a script reads its portraits from its own folder
            shutil.copyfile(PORTRAITS / name, Path(scratch) / name)
        prefect_home = Path(scratch) / "prefect"
        migrate(prefect_home)
        variants = (("loop", "loop", script), ("flow", "flow", script), ("flow, talking heads", "flow", with_portraits))
        rounds = [{name: measure(mode, path, prefect_home) for name, mode, path in variants} for _ in range(args.rounds)]
    print(f"\nTwo-host episode, {os.cpu_count()} CPUs, nothing cached, Prefect database warm (loop and flow: audiogram video); {args.rounds} round(s), variants alternating\n")
    print("| round | variant | lines | episode s | wall s | real-time factor | process s (incl. start-up) | peak RSS MB (python) | peak RSS MB (with children) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for number, results in enumerate(rounds, start=1):
        for mode, r in results.items():
            print(f"| {number} | {mode} | {r['lines']} | {r['episode_s']:.1f} | {r['wall_s']:.1f} | {r['wall_s'] / r['episode_s']:.3f} | {r['process_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['tree_peak_rss_mb']:.0f} |")
    median = {name: statistics.median(results[name]["wall_s"] for results in rounds) for name, _, _ in variants}
    ratios = [results["flow"]["wall_s"] / results["loop"]["wall_s"] for results in rounds]
    print(f"\nOrchestration overhead (flow − loop, medians): {median['flow'] - median['loop']:+.1f} s wall, {median['flow'] / median['loop']:.2f}× the loop "
          f"(per round: {', '.join(f'{ratio:.2f}×' for ratio in ratios)})")


if __name__ == "__main__":
    main()
