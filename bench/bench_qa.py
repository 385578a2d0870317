"""Benchmark: what the speech QA step costs, the same episodes with ``qa: {asr: off}`` and with QA on.

    .venv/bin/python bench/bench_qa.py [--minutes 3] [--repeat 1] [--no-demo]

Episodes: a two-host script of ``--minutes`` (joe and heart, audiogram video: the lightest episode, where
QA weighs most) and the demo as shipped (talking heads). Each run is a fresh process with an empty
``PODFORGE_HOME``, so nothing is cached; QA off and on alternate so that load from elsewhere hits both.
It reports wall time and CPU time (this process and its children, ffmpeg included), the QA step's share
of each ((on - off) / on), the recogniser's own time (``hear_line`` calls, timed inside the run, waits for
the model excluded: the calls are serialised, so their sum is the time the recogniser was busy, an upper
bound on what QA adds to the critical path, and under the same load as the episode around it), and the
lines QA retook or flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

QA_OFF = "qa: {asr: off}\n"
QA_ON = "qa: {asr: whisper}\n"


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(script: Path, config: Path, out: Path) -> None:
    import podforge.engines.whisper as whisper
    from podforge.prefect_env import configure_prefect_environment, ensure_prefect_home

    asr_seconds: list[float] = []
    real_hear = whisper.hear_line

    def timed_hear(*args, **kwargs):  # called under the model's lock: time spent hearing, not waiting
        started = time.perf_counter()
        try:
            return real_hear(*args, **kwargs)
        finally:
            asr_seconds.append(time.perf_counter() - started)

    whisper.hear_line = timed_hear
    configure_prefect_environment()
    ensure_prefect_home()
    from flows.episode import episode

    started, cpu_before = time.perf_counter(), cpu_seconds()
    manifest = episode(script=str(script), config=[str(config)], out_dir=str(out))
    checks = [step.notes for step in manifest.steps if step.step == "qa"]
    result = {
        "wall_s": time.perf_counter() - started,
        "cpu_s": cpu_seconds() - cpu_before,
        "episode_s": manifest.duration_s,
        "lines": sum(step.step == "speech" for step in manifest.steps),
        "asr_s": sum(asr_seconds),
        "asr_calls": len(asr_seconds),
        "retaken": sum(len(check["takes"]) > 1 for check in checks),
        "flagged": sum(check["flagged"] for check in checks),
    }
    print("RESULT " + json.dumps(result))


def measure(script: Path, qa: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="podforge-bench-qa-") as scratch:
        config = Path(scratch) / "qa.yaml"
        config.write_text(qa)
        env = {**os.environ, "PODFORGE_HOME": str(Path(scratch) / "home")}
        done = subprocess.run([sys.executable, __file__, "--child", str(script), str(config), str(Path(scratch) / "out")], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{script.name} ({qa.strip()}) failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-demo", action="store_true", help="only the audiogram episode")
    parser.add_argument("--child", nargs=3, metavar=("SCRIPT", "CONFIG", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(*(Path(arg) for arg in args.child))
        return
    from bench_episode import bench_script

    with tempfile.TemporaryDirectory() as scratch:
        light = Path(scratch) / "bench-qa.md"
        light.write_text(bench_script(args.minutes).replace("{voice: joe-bright}", "{voice: heart}"))
        episodes = {f"{args.minutes:g}-minute, audiogram": light}
        if not args.no_demo:
            episodes["demo, talking heads"] = REPO / "configs" / "episodes" / "demo.md"
        rows = []
        for name, script in episodes.items():
            for _ in range(args.repeat):
                off, on = measure(script, QA_OFF), measure(script, QA_ON)
                rows.append((name, off, on))
                print(f"{name}: off {off['wall_s']:.1f} s, on {on['wall_s']:.1f} s", file=sys.stderr)
    print(f"\nSpeech QA on vs off, {os.cpu_count()} CPUs, nothing cached; load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| episode | lines | episode s | wall s, QA off | wall s, QA on | (on - off) / on, wall | CPU s, off | CPU s, on | (on - off) / on, CPU | ASR calls | recogniser busy s | busy / wall (on) | retaken | flagged |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, off, on in rows:
        wall_share = (on["wall_s"] - off["wall_s"]) / on["wall_s"]
        cpu_share = (on["cpu_s"] - off["cpu_s"]) / on["cpu_s"]
        print(
            f"| {name} | {on['lines']} | {on['episode_s']:.1f} | {off['wall_s']:.1f} | {on['wall_s']:.1f} | {wall_share:.1%} | {off['cpu_s']:.1f} | {on['cpu_s']:.1f} "
            f"| {cpu_share:.1%} | {on['asr_calls']} | {on['asr_s']:.1f} | {on['asr_s'] / on['wall_s']:.1%} | {on['retaken']} | {on['flagged']} |"
        )


if __name__ == "__main__":
    main()
