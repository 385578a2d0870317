"""Benchmark: warm engine workers against one cold runner process per line, and memory against line count.

    .venv/bin/python bench/bench_workers.py [--lines 20] [--episodes 12 100]

Needs the ``coqui`` environment in ``$PODFORGE_HOME`` (``podforge envs build coqui``, about 7.6 GB); a
tiny random VITS voice is built into a temporary folder (``tests/tiny_models.py``). Everything runs on
the CPU.

1. **Per-line overhead.** The same ``--lines`` lines, one Coqui voice, through ``CoquiEngine.run``,
   side by side in one process: *cold* starts a fresh worker for every line and stops it after (process
   start, imports, model load, one request, exit: what the runner did before warm workers); *warm* keeps
   one worker for all lines. Synthesis is the runner's own ``handle`` time (``compute_s``); the overhead
   of a line is its wall time minus its synthesis (it includes the engine's text and timing work in this
   process). Lines after the first are compared, so the one load of the warm worker is not averaged away.
2. **Peak memory against line count.** Whole episodes (Prefect flow, one Coqui voice for every line, a
   small audiogram) of ``--episodes`` lines, each in a fresh process with an empty cache; the peak RSS of
   the process tree (Python, Prefect's server, the workers, ffmpeg) and of the Coqui workers alone, and
   how many Coqui runner processes were started (distinct pids seen).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
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
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from bench_episode import SENTENCES  # noqa: E402 - the same sentences as the episode benchmark

COQUI_RUNNER = str(REPO / "external" / "coqui" / "runner.py")
EPISODE_CONFIG = "mix: {intro_s: 0.5, outro_s: 0.5}\nvideo: {width: 320, height: 180, fps: 10}\n"


def line_text(number: int) -> str:
    """A distinct line (the cache would serve a repeated one): a numbered sentence."""
    return f"Line {number + 1}. {SENTENCES[number % len(SENTENCES)]}"


class Responses:
    """A runner observer that keeps every response (load and compute seconds, the worker's pid)."""

    def __init__(self) -> None:
        self.responses: list = []

    def runner_env(self) -> dict[str, str]:
        return {}

    @contextlib.contextmanager
    def computing(self, pid: int):
        yield

    def runner_finished(self, response) -> None:
        self.responses.append(response)


# --- 1. per-line overhead -------------------------------------------------------------------------------


def speak_lines(engine, count: int, workdir: Path, *, warm: bool) -> list[dict]:
    from podforge.engines.base import SpeechRequest
    from podforge.runner import observe_runners
    from podforge.workers import engine_workers

    rows = []
    with contextlib.ExitStack() as scope:
        if warm:
            scope.enter_context(engine_workers())
        for number in range(count):
            recorder = Responses()
            started = time.perf_counter()
            with contextlib.ExitStack() as line_scope:
                if not warm:
                    line_scope.enter_context(engine_workers())  # a fresh worker, stopped (and waited for) after the line
                with observe_runners(recorder):
                    engine.run(SpeechRequest(text=line_text(number), language="en"), workdir / f"line{number}")
            wall = time.perf_counter() - started
            response = recorder.responses[0]
            rows.append({"wall_s": wall, "compute_s": response.compute_s, "load_s": response.load_s, "pid": response.worker_pid})
    return rows


def per_line_overhead(count: int, scratch: Path) -> dict[str, list[dict]]:
    from podforge import envs
    from podforge.engines.coqui import CoquiEngine
    from tiny_models import make_tiny_vits

    envs.python_for("coqui")  # fails with the build command when the environment is missing
    model_path, config_path = make_tiny_vits(scratch / "vits-tiny")
    engine = CoquiEngine({"model_path": str(model_path), "config_path": str(config_path), "device": "cpu"})
    return {
        "cold (one runner process per line)": speak_lines(engine, count, scratch / "cold", warm=False),
        "warm (one worker for all lines)": speak_lines(engine, count, scratch / "warm", warm=True),
    }


def overhead_table(results: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| runner | lines | runner processes | first line s | later lines: wall s | synthesis s | overhead s | overhead / synthesis | model load s (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        later = rows[1:]
        wall = statistics.mean(row["wall_s"] for row in later)
        synthesis = statistics.mean(row["compute_s"] for row in later)
        overhead = statistics.mean(row["wall_s"] - row["compute_s"] for row in later)
        loads = [row["load_s"] for row in rows if row["load_s"]]
        lines.append(
            f"| {name} | {len(rows)} | {len({row['pid'] for row in rows})} | {rows[0]['wall_s']:.2f} | {wall:.3f} | {synthesis:.3f} | "
            f"{overhead:.3f} | {overhead / synthesis:.2f}× | {statistics.mean(loads) if loads else 0:.2f} |"
        )
    return lines


# --- 2. memory against line count -----------------------------------------------------------------------


class TreeMemory:
    """Samples the RSS of this process and its children every 100 ms; notes the Coqui runner processes."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.peak_workers_mb = 0.0
        self.coqui_pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            total = workers = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    rss = process.memory_info().rss
                    if COQUI_RUNNER in process.cmdline():
                        self.coqui_pids.add(process.pid)
                        workers += rss
                except psutil.Error:
                    continue
                total += rss
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.peak_workers_mb = max(self.peak_workers_mb, workers / 2**20)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def episode_child(lines: int, out: Path) -> None:
    """One episode of ``lines`` lines in this (fresh) process; prints its measurements."""
    from podforge.prefect_env import configure_prefect_environment, ensure_prefect_home
    from podforge.runner import observe_runners

    configure_prefect_environment()
    ensure_prefect_home()
    from flows.episode import episode

    script = out / "episode.md"
    script.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"{'ALEX' if n % 2 == 0 else 'SAM'}: {line_text(n)}" for n in range(lines))
    script.write_text(f"---\ntitle: Workers bench\nhosts:\n  ALEX: {{voice: vits-tiny-local}}\n  SAM: {{voice: vits-tiny-local}}\n---\n{body}\n")
    config = out / "fast.yaml"
    config.write_text(EPISODE_CONFIG)
    recorder = Responses()
    started = time.perf_counter()
    with TreeMemory() as memory, observe_runners(recorder):  # the flow's tasks inherit the observer
        manifest = episode(script=str(script), config=[str(config)], out_dir=str(out / "out"))
    speech = [step for step in manifest.steps if step.step == "speech"]
    result = {
        "lines": len(speech),
        "engines": sorted({step.engine for step in speech}),
        "wall_s": time.perf_counter() - started,
        "episode_s": manifest.duration_s,
        "coqui_workers": len({response.worker_pid for response in recorder.responses}),
        "coqui_processes_seen": len(memory.coqui_pids),
        "peak_tree_mb": memory.peak_mb,
        "peak_workers_mb": memory.peak_workers_mb,
        "peak_python_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_s": sum(response.load_s for response in recorder.responses),
        "compute_s": sum(response.compute_s for response in recorder.responses),
    }
    print("RESULT " + json.dumps(result))


def measure_episode(lines: int, scratch: Path, vits_dir: Path) -> dict:
    """Run :func:`episode_child` with an empty cache; the environments and the tiny voice are linked in."""
    from podforge.config import podforge_home

    home = scratch / f"home-{lines}"
    (home / "models").mkdir(parents=True)
    (home / "envs").symlink_to(podforge_home() / "envs")
    (home / "models" / "vits-tiny").symlink_to(vits_dir)
    env = {**os.environ, "PODFORGE_HOME": str(home)}
    done = subprocess.run([sys.executable, __file__, "--episode-child", str(lines), str(scratch / f"episode-{lines}")], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or "RESULT " not in done.stdout:
        raise SystemExit(f"the {lines}-line episode failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def memory_table(results: list[dict]) -> list[str]:
    lines = [
        "| lines | speech engine | wall s | Coqui workers (pids reported / seen) | model load s (all lines) | synthesis s (all lines) | peak RSS MB, Coqui workers | peak RSS MB, Python | peak RSS MB, whole tree |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['lines']} | {', '.join(r['engines'])} | {r['wall_s']:.1f} | {r['coqui_workers']} / {r['coqui_processes_seen']} | {r['load_s']:.2f} | {r['compute_s']:.2f} | "
            f"{r['peak_workers_mb']:.0f} | {r['peak_python_mb']:.0f} | {r['peak_tree_mb']:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--episodes", type=int, nargs="*", default=[12, 100])
    parser.add_argument("--episode-child", nargs=2, metavar=("LINES", "OUT"))
    args = parser.parse_args()
    if args.episode_child:
        episode_child(int(args.episode_child[0]), Path(args.episode_child[1]))
        return
    with tempfile.TemporaryDirectory(prefix="podforge-bench-workers-") as folder:
        scratch = Path(folder)
        overhead = per_line_overhead(args.lines, scratch)
        print(f"\nTiny VITS on the CPU, {args.lines} lines, {os.cpu_count()} CPUs; later lines = lines 2..{args.lines}\n")
        print("\n".join(overhead_table(overhead)), flush=True)
        episodes = [measure_episode(lines, scratch, scratch / "vits-tiny") for lines in args.episodes]
    if episodes:
        print("\nWhole episodes, one Coqui voice for every line, nothing cached (fresh process each)\n")
        print("\n".join(memory_table(episodes)))
    if len(episodes) >= 2:
        small, large = episodes[0], episodes[-1]
        print(f"\nPeak RSS, whole tree: {large['peak_tree_mb'] / small['peak_tree_mb']:.2f}× for {large['lines'] / small['lines']:.1f}× the lines")


if __name__ == "__main__":
    main()
