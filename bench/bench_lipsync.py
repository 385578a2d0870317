"""Benchmark: lip sync of the offline talking portrait on several photographs, measured from the outside.

    .venv/bin/python bench/bench_lipsync.py [--baseline main] [--size 384]

Each photograph (the demo's two hosts, and public-domain photos mirrored, scaled and off-centre) is
animated by the ``portrait`` engine on one Piper sentence; then :func:`podforge.media.lipsync.measure_lip_sync`
finds the face anew in the rendered video and correlates the motion of its mouth region with the speech
energy (r; ~0 when the mouth is animated somewhere else, or not at all). With ``--baseline REF`` the
same photographs are also animated by ``REF``'s engine in the same run and measured the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from baseline import REPO, export_tree, run_worker, temporary_folder, worker_tree  # noqa: E402

sys.path.insert(0, str(worker_tree(sys.argv)))

TEXT = "Let us start with money. A T4 card in the cloud rents for about fifty-three cents an hour. An A10G is about a dollar an hour!"


def make_photos(folder: Path) -> dict[str, Path]:
    """The photographs, written as files (variants made here, never committed)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    demo, data = REPO / "configs" / "episodes" / "portraits", REPO / "tests" / "data" / "portraits"
    astronaut = skimage.data.astronaut()
    grace = np.asarray(Image.open(data / "grace_hopper.jpg").convert("RGB"))
    einstein = np.asarray(Image.open(data / "einstein.jpg").convert("RGB"))
    small_off_centre = np.full((520, 760, 3), 96, np.uint8)
    small_off_centre[520 - 256 :, 760 - 256 :] = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.LANCZOS))
    pictures = {
        "demo ALEX (alex.jpg)": np.asarray(Image.open(demo / "alex.jpg").convert("RGB")),
        "demo SAM (sam.jpg)": np.asarray(Image.open(demo / "sam.jpg").convert("RGB")),
        "astronaut, half size, off-centre": small_off_centre,
        "Grace Hopper": grace,
        "Grace Hopper, mirrored": grace[:, ::-1],
        "Grace Hopper, 2× larger": np.asarray(Image.fromarray(grace).resize((1024, 1200), Image.Resampling.BICUBIC)),
        "Einstein (two faces)": einstein,
        "Einstein, mirrored": einstein[:, ::-1],
    }
    paths = {}
    for index, (name, rgb) in enumerate(pictures.items()):
        paths[name] = folder / f"photo{index}.png"
        Image.fromarray(np.ascontiguousarray(rgb)).save(paths[name])
    return paths


def speech(folder: Path):
    from podforge.engines.base import SpeechRequest
    from podforge.engines.piper import PiperEngine

    return PiperEngine().run(SpeechRequest(text=TEXT), folder)


def animate(photos: dict[str, str], wav: str, phonemes: list[dict], duration_s: float, size: int, out: Path) -> dict[str, dict]:
    """Run the engine of the tree this process imports on every photo; videos, notes or the refusal."""
    from podforge.engines.base import AvatarRequest
    from podforge.engines.portrait import PortraitEngine
    from podforge.errors import PodforgeError
    from podforge.timing import SpeakerAlignment

    results = {}
    for index, (name, path) in enumerate(photos.items()):
        request = AvatarRequest(
            speaker=f"HOST{index}",
            portrait=Path(path),
            audio=Path(wav),
            alignment=SpeakerAlignment(phonemes=phonemes),
            duration_s=duration_s,
            width=size,
            height=size,
            encoder_options={"preset": "veryfast", "crf": "20"},
        )
        workdir = out / f"host{index}"
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            result = PortraitEngine({}).run(request, workdir)
        except PodforgeError as error:
            results[name] = {"refused": error.message}
            continue
        results[name] = {"video": str(result.video), "notes": result.notes, "seconds": time.perf_counter() - started}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to compare with (e.g. main)")
    parser.add_argument("--size", type=int, default=384, help="host video side in pixels")
    parser.add_argument("--worker-tree", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_tree:
        job = json.loads(Path(args.job).read_text())
        print(json.dumps(animate(job["photos"], job["wav"], job["phonemes"], job["duration_s"], job["size"], Path(job["out"]))))
        return

    from podforge.media.lipsync import measure_lip_sync
    from podforge.media.portraits import NoFrontalFace

    with temporary_folder("podforge-bench-lipsync-") as folder:
        work = Path(folder)
        photos = make_photos(work)
        spoken = speech(work)
        job = {
            "photos": {name: str(path) for name, path in photos.items()},
            "wav": str(spoken.wav),
            "phonemes": [phoneme.model_dump() for phoneme in spoken.alignment.phonemes],
            "duration_s": spoken.duration_s + 0.4,
            "size": args.size,
        }
        trees = {"this tree": REPO}
        if args.baseline:
            trees = {args.baseline: export_tree(args.baseline, work), "this tree": REPO}
        runs = {}
        for label, tree in trees.items():
            job_file = work / f"job-{len(runs)}.json"
            job_file.write_text(json.dumps({**job, "out": str(work / f"videos-{len(runs)}")}))
            runs[label] = run_worker(Path(__file__), tree, ["--job", str(job_file)])

        rows = []
        for name in photos:
            cells = []
            for label in trees:
                run = runs[label][name]
                if "refused" in run:
                    cells.append(("refused", run["refused"], ""))
                    continue
                try:
                    measure = measure_lip_sync(Path(run["video"]), spoken.wav)
                    r = f"{measure.r:.2f}"
                except NoFrontalFace as reason:
                    r = f"no face in video ({reason})"
                notes = run["notes"]
                check = f"{notes['lip_sync_check']} (overlap {notes['lip_sync_overlap']}, {notes['lip_sync_offset_px']} px)" if "lip_sync_check" in notes else "—"
                cells.append((r, check, f"{run['seconds']:.1f}"))
            rows.append((name, cells))

    print(f"lip sync: mouth-region motion vs speech RMS (r), {spoken.duration_s:.1f} s of Piper speech, {args.size}×{args.size} host video")
    header = "| photo | " + " | ".join(f"r ({label}) | self-check ({label}) | engine s ({label})" for label in trees) + " |"
    print(header)
    print("|---|" + "---:|---|---:|" * len(trees))
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(" | ".join(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
