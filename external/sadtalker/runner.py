"""The ``sadtalker`` runner: one SadTalker ``inference.py`` run per audio chunk, in the ``sadtalker`` env.

SadTalker's code is not part of Podforge: the runner drives a checkout (``settings["home"]``) as a
separate program. Request: ``{"source_image": str, "driven_audio": str}`` (a PNG and a 16 kHz WAV).
Result: ``{"video": str, "seconds": float}``: SadTalker's MP4 (25 fps, with the chunk's audio), moved to
``workdir/sadtalker.mp4``.

Settings (checked and filled in by ``podforge.engines.sadtalker``): ``home``, ``checkpoint_dir``,
``gfpgan_dir``, ``size`` (256|512), ``enhancer`` (gfpgan|none), ``preprocess`` (crop|resize|full),
``still``, ``batch_size``, ``expression_scale``, ``pose_style`` (0..45), ``device`` (cuda|cpu),
``cpu_fallback``, ``python_path``.

Where SadTalker looks for files, and how the runner points it at the pre-seeded ones:

* the checkpoints: ``--checkpoint_dir``;
* its configs: ``src/config`` beside ``inference.py``, found from ``sys.argv[0]``, so the script is run
  by its absolute path;
* the face detector, the landmark model and GFPGAN: ``gfpgan/weights/...`` relative to the working
  directory, downloaded there when missing. The runner runs SadTalker in ``workdir`` with
  ``workdir/gfpgan/weights`` a link to ``gfpgan_dir``, so nothing is downloaded;
* the output: ``<result_dir>/<timestamp>.mp4``. Each chunk gets a fresh, empty result directory, and the
  video is the one ``.mp4`` that appears directly in it after the run started;
* ``ffmpeg``: SadTalker (and pydub) run it by name from ``PATH``. The runner links the binary of the
  environment's imageio-ffmpeg as ``workdir/bin/ffmpeg`` and puts that folder first on SadTalker's PATH;
* ``python_path`` (a setting, default none): folders put first on ``inference.py``'s PYTHONPATH. A
  ``sitecustomize.py`` in one of them runs before SadTalker's code: the seam the smoke test uses to
  replace face detection (``tests/sadtalker_seam``).

This module imports only the standard library at load time (torch only to choose the device), so the
main environment's tests can check the command line and the output finder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from podforge_runner import serve

RESULT_DIR_NAME = "sadtalker-results"
OUTPUT_NAME = "sadtalker.mp4"


def inference_command(python: str, settings: dict, source_image: Path, driven_audio: Path, result_dir: Path, *, cpu: bool) -> list[str]:
    """The argument list for SadTalker's ``inference.py`` (its argparse options, as of v0.0.2)."""
    home = Path(settings["home"]).resolve()
    command = [
        python,
        str(home / "inference.py"),
        "--driven_audio", str(Path(driven_audio).resolve()),
        "--source_image", str(Path(source_image).resolve()),
        "--checkpoint_dir", str(Path(settings["checkpoint_dir"]).resolve()),
        "--result_dir", str(Path(result_dir).resolve()),
        "--size", str(int(settings["size"])),
        "--preprocess", settings["preprocess"],
        "--batch_size", str(int(settings["batch_size"])),
        "--expression_scale", repr(float(settings["expression_scale"])),
        "--pose_style", str(int(settings["pose_style"])),
    ]
    if settings.get("enhancer", "none") != "none":
        command += ["--enhancer", settings["enhancer"]]
    if settings.get("still"):
        command.append("--still")
    if cpu:
        command.append("--cpu")
    return command


def link_weights(workdir: Path, gfpgan_dir: Path) -> Path:
    """Make ``workdir/gfpgan/weights`` point at ``gfpgan_dir`` (SadTalker resolves it from its cwd)."""
    link = workdir / "gfpgan" / "weights"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == Path(gfpgan_dir).resolve():
            return link
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            shutil.rmtree(link)
    link.symlink_to(Path(gfpgan_dir).resolve(), target_is_directory=True)
    return link


def fresh_result_dir(workdir: Path) -> Path:
    """An empty result directory (a failed earlier attempt's leftovers are removed)."""
    result_dir = workdir / RESULT_DIR_NAME
    if result_dir.exists():
        shutil.rmtree(result_dir)
    result_dir.mkdir(parents=True)
    return result_dir


def find_result_video(result_dir: Path, started_at: float) -> Path:
    """The video SadTalker wrote: the newest ``.mp4`` directly in ``result_dir`` modified since ``started_at``.

    SadTalker names it by the time it started (``2024_01_31_12.00.00.mp4``); its intermediate files live
    in a subfolder of the same name that it deletes, and ``temp_*`` files are not results.
    """
    candidates = [
        path
        for path in Path(result_dir).glob("*.mp4")
        if path.is_file() and not path.name.startswith("temp_") and path.stat().st_mtime >= started_at - 1.0
    ]
    if not candidates:
        found = sorted(p.name for p in Path(result_dir).rglob("*")) or ["nothing"]
        raise RuntimeError(f"SadTalker finished but wrote no video in {result_dir} (found: {', '.join(found[:10])})")
    return max(candidates, key=lambda path: path.stat().st_mtime)


def path_with_ffmpeg(workdir: Path, ffmpeg: str, path: str) -> str:
    """``PATH`` with a folder holding ``ffmpeg`` (a link to the ``ffmpeg`` binary) in front."""
    folder = workdir / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "ffmpeg"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(ffmpeg).resolve())
    return f"{folder}{os.pathsep}{path}" if path else str(folder)


def inference_environment(workdir: Path, settings: dict, environ: dict[str, str], ffmpeg: str) -> dict[str, str]:
    """The variables ``inference.py`` runs with: ``environ`` with ffmpeg first on PATH and the
    ``python_path`` folders first on PYTHONPATH."""
    environment = dict(environ, PATH=path_with_ffmpeg(workdir, ffmpeg, environ.get("PATH", "")))
    folders = [str(Path(folder).resolve()) for folder in settings.get("python_path", [])]
    if folders:
        environment["PYTHONPATH"] = os.pathsep.join([*folders, *([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])])
    return environment


def choose_device(settings: dict) -> str:
    if settings.get("device", "cuda") != "cuda":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if settings.get("cpu_fallback"):
        print("sadtalker: CUDA was asked for but torch sees no GPU; running on the CPU (slow)", flush=True)
        return "cpu"
    raise RuntimeError(
        f"CUDA was asked for but torch {torch.__version__} sees no GPU (a CPU-only torch, a driver too old for its "
        "CUDA, or no device); set `device: cpu` or `cpu_fallback: true` for the sadtalker engine to run on the CPU"
    )


def load(engine: str, settings: dict) -> dict:
    """SadTalker loads its models inside each ``inference.py`` run; the process keeps only its settings."""
    return settings


def handle(settings: dict, request: dict, workdir: Path) -> tuple[dict, str]:
    device = choose_device(settings)
    link_weights(workdir, Path(settings["gfpgan_dir"]))
    result_dir = fresh_result_dir(workdir)
    command = inference_command(sys.executable, settings, Path(request["source_image"]), Path(request["driven_audio"]), result_dir, cpu=device == "cpu")
    print("sadtalker: " + " ".join(command), flush=True)
    import imageio_ffmpeg

    environment = inference_environment(workdir, settings, dict(os.environ), imageio_ffmpeg.get_ffmpeg_exe())
    started_at = time.time()
    completed = subprocess.run(command, cwd=workdir, env=environment, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"SadTalker's inference.py exited with code {completed.returncode}")
    video = find_result_video(result_dir, started_at)
    output = workdir / OUTPUT_NAME
    os.replace(video, output)
    shutil.rmtree(result_dir, ignore_errors=True)
    return {"video": str(output), "seconds": round(time.time() - started_at, 3)}, device


if __name__ == "__main__":
    serve(load, handle, report_versions=("torch", "torchvision", "numpy", "imageio"))
