"""SadTalker, the GPU talking head, run from its own checkout in the ``sadtalker`` environment.

This is the main environment's side: it checks the setup (checkout, checkpoints, face-model weights) and
fails with what to do when something is missing, validates the portrait, cuts the host's speech into
chunks of at most ``max_chunk_s`` seconds at pauses, runs each chunk through ``external/sadtalker/runner.py``
(one ``inference.py`` run per chunk) and joins the chunk videos into one picture for the whole episode.

Each chunk is cached by the content of its audio, the portrait and the settings, in a folder of its own:
when chunk 27 fails (out of GPU memory, say), a re-run reuses chunks 1 to 26 and starts at 27.

Chunk boundaries fall on the video frame grid (SadTalker renders 25 fps, ``floor(samples / 640)`` frames
of 16 kHz audio), so every chunk but the last is a whole number of frames and the joined video has
exactly as many frames as the chunks together: no repeated or dropped frame at a seam.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import ffmpeg as ffmpeg_graph
import numpy as np
import soundfile
from pydantic import Field

from podforge.caching import broken_files, files_of, step_key, step_workdir
from podforge.config import REPO_ROOT
from podforge.engines.base import AvatarRequest, AvatarResult, DoctorFinding, Engine, EngineSettings, Resources
from podforge.envs import env_dir, read_marker
from podforge.errors import EngineError
from podforge.io import atomic_path, copy_atomic, write_text_atomic
from podforge.media.audio import write_wav
from podforge.media.encoders import encoder_options_for, with_nvenc_fallback
from podforge.media.ffmpeg import run_ffmpeg, run_graph
from podforge.media.layout import frame_count
from podforge.media.portraits import load_portrait
from podforge.runner import run_env_python

SADTALKER_FPS = 25
SADTALKER_RATE = 16000
ENV = "sadtalker"
README = REPO_ROOT / "external" / "sadtalker" / "README.md"
FACE_WEIGHTS = ("alignment_WFLW_4HG.pth", "detection_Resnet50_Final.pth")
ENHANCER_WEIGHTS = ("GFPGANv1.4.pth", "parsing_parsenet.pth")


class SadTalkerSettings(EngineSettings):
    """The ``sadtalker`` engine's settings (``engines.sadtalker.settings`` in the config)."""

    home: Path | None = Field(default=None, description="the SadTalker checkout; default: $SADTALKER_HOME")
    checkpoint_dir: Path | None = Field(default=None, description="default: HOME/checkpoints")
    gfpgan_dir: Path | None = Field(default=None, description="face detector, landmarks, GFPGAN; default: HOME/gfpgan/weights")
    size: Literal[256, 512] = 256
    enhancer: Literal["gfpgan", "none"] = "none"
    preprocess: Literal["crop", "resize", "full"] = "full"
    still: bool = True
    batch_size: int = Field(default=2, ge=1, le=32)
    expression_scale: float = Field(default=1.0, ge=0.0, le=3.0)
    pose_style: int = Field(default=0, ge=0, le=45)
    device: Literal["cuda", "cpu"] = "cuda"
    cpu_fallback: bool = False
    python_path: list[Path] = Field(
        default_factory=list,
        description="folders put first on inference.py's PYTHONPATH (a sitecustomize.py there runs before SadTalker; the smoke test's seam)",
    )
    max_chunk_s: float = Field(default=60.0, ge=5.0, le=600.0)
    chunk_timeout_s: float = Field(default=3600.0, gt=0)

    def resolved_home(self) -> Path | None:
        if self.home is not None:
            return self.home.expanduser()
        from_env = os.environ.get("SADTALKER_HOME")
        return Path(from_env).expanduser() if from_env else None

    def resolved_paths(self) -> tuple[Path | None, Path | None, Path | None]:
        """(checkout, checkpoint folder, gfpgan weights folder), each None when it cannot be known."""
        home = self.resolved_home()
        checkpoints = self.checkpoint_dir.expanduser() if self.checkpoint_dir else (home / "checkpoints" if home else None)
        gfpgan = self.gfpgan_dir.expanduser() if self.gfpgan_dir else (home / "gfpgan" / "weights" if home else None)
        return home, checkpoints, gfpgan

    def runner_settings(self) -> dict[str, Any]:
        """What the runner needs, with every path filled in (only after :func:`check_setup` passed)."""
        home, checkpoints, gfpgan = self.resolved_paths()
        settings = self.model_dump(mode="json", exclude={"max_chunk_s", "chunk_timeout_s"})
        settings.update(home=str(home), checkpoint_dir=str(checkpoints), gfpgan_dir=str(gfpgan))
        return settings


# --- setup checks ----------------------------------------------------------------------------------


def setup_findings(options: SadTalkerSettings) -> list[DoctorFinding]:
    """Is the SadTalker checkout there, with its checkpoints and the face-model weights it needs?"""
    home, checkpoints, gfpgan = options.resolved_paths()
    how = f"see {README.relative_to(REPO_ROOT)}"
    if home is None:
        return [DoctorFinding(level="warn", message="SadTalker checkout: not configured", fix=f"set SADTALKER_HOME or engines.sadtalker.settings.home; {how}")]
    findings = []
    checkout_ok = (home / "inference.py").is_file() and (home / "src" / "config").is_dir()
    findings.append(
        DoctorFinding(
            level="ok" if checkout_ok else "warn",
            message=f"SadTalker checkout: {home}" + ("" if checkout_ok else " lacks inference.py or src/config"),
            fix="" if checkout_ok else f"`git clone https://github.com/OpenTalker/SadTalker` there; {how}",
        )
    )
    assert checkpoints is not None and gfpgan is not None
    needed = [f"SadTalker_V0.0.2_{options.size}.safetensors", "mapping_00109-model.pth.tar" if options.preprocess == "full" else "mapping_00229-model.pth.tar"]
    missing = [name for name in needed if not (checkpoints / name).is_file()]
    findings.append(
        DoctorFinding(
            level="warn" if missing else "ok",
            message=f"SadTalker checkpoints in {checkpoints}: " + (f"missing {', '.join(missing)}" if missing else ", ".join(needed)),
            fix=f"run scripts/download_models.sh in the checkout on a machine with internet; {how}" if missing else "",
        )
    )
    weights = list(FACE_WEIGHTS) + (list(ENHANCER_WEIGHTS) if options.enhancer == "gfpgan" else [])
    missing = [name for name in weights if not (gfpgan / name).is_file()]
    findings.append(
        DoctorFinding(
            level="warn" if missing else "ok",
            message=f"face detector, landmark and enhancer weights in {gfpgan}: " + (f"missing {', '.join(missing)}" if missing else ", ".join(weights)),
            fix=f"copy them there (SadTalker would try to download them at run time); {how}" if missing else "",
        )
    )
    return findings


FFMPEG_VERSION = "import imageio_ffmpeg, subprocess; print(subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-version'], check=True, capture_output=True, text=True).stdout.splitlines()[0])"
"""Prints the first line of ``ffmpeg -version`` for the binary the runner puts on SadTalker's PATH."""


def environment_findings(options: SadTalkerSettings) -> list[DoctorFinding]:
    """Run in the built ``sadtalker`` environment what SadTalker will run: the ffmpeg the runner puts on
    its PATH, and the checkout's ``inference.py --help`` (which imports all of SadTalker's code).

    Nothing when the environment is not built (the doctor already says to build it)."""
    if read_marker(env_dir(ENV)) is None:
        return []
    rebuild = f"correct the pin named there in external/{ENV}/requirements.txt and run `podforge envs build {ENV}`"
    ffmpeg = run_env_python(ENV, ["-c", FFMPEG_VERSION])
    findings = [
        DoctorFinding(level="ok", message=f"ffmpeg on SadTalker's PATH (imageio-ffmpeg's): {' '.join(ffmpeg.stdout.split()[:3])}")
        if ffmpeg.ok
        else DoctorFinding(level="error", message=f"imageio-ffmpeg's ffmpeg does not run in the {ENV} environment: {ffmpeg.tail}", fix=rebuild)
    ]
    home = options.resolved_home()
    if home is not None and (home / "inference.py").is_file():
        cli = run_env_python(ENV, [str(home / "inference.py"), "--help"])
        findings.append(
            DoctorFinding(level="ok", message=f"SadTalker's CLI runs: {home / 'inference.py'} --help")
            if cli.ok
            else DoctorFinding(level="error", message=f"SadTalker's {home / 'inference.py'} --help fails (exit {cli.returncode}): {cli.tail}", fix=rebuild)
        )
    return findings


def check_setup(options: SadTalkerSettings) -> None:
    """Raise one EngineError listing every missing piece, before any GPU time is spent."""
    failed = [finding for finding in setup_findings(options) if finding.level != "ok"]
    if failed:
        problems = "; ".join(f"{finding.message}: {finding.fix}" for finding in failed)  # one line, every problem named
        raise EngineError(f"SadTalker is not set up: {problems}", field="engines.sadtalker.settings.home")


# --- chunks ----------------------------------------------------------------------------------------


def silences_between(intervals: list[tuple[float, float]], duration_s: float, min_s: float = 0.2) -> list[tuple[float, float]]:
    """The gaps of at least ``min_s`` between ``intervals`` (and before the first, after the last)."""
    gaps: list[tuple[float, float]] = []
    cursor = 0.0
    for start, end in sorted(intervals):
        if start - cursor >= min_s:
            gaps.append((cursor, min(start, duration_s)))
        cursor = max(cursor, end)
    if duration_s - cursor >= min_s:
        gaps.append((cursor, duration_s))
    return gaps


def silences_in(envelope: np.ndarray, fps: int, min_s: float = 0.3, floor: float = 0.05) -> list[tuple[float, float]]:
    """Runs of at least ``min_s`` where a per-frame RMS ``envelope`` stays under ``floor`` × its loud level."""
    if envelope.size == 0 or envelope.max() <= 0:
        return [(0.0, envelope.size / fps)] if envelope.size else []
    quiet = envelope < floor * float(np.percentile(envelope[envelope > 0], 95))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    return [(start / fps, end / fps) for start, end in zip(edges[::2], edges[1::2]) if (end - start) / fps >= min_s]


def plan_chunks(duration_s: float, silences: list[tuple[float, float]], max_s: float = 60.0, fps: int = SADTALKER_FPS) -> list[tuple[float, float]]:
    """Cut ``[0, duration_s]`` into consecutive chunks of at most ``max_s`` seconds, at pauses where possible.

    Each cut is placed in the middle of the latest pause that lies in the second half of the chunk's
    allowed span, so a chunk is never shorter than ``max_s / 2`` unless it is the last; without such a
    pause the chunk is cut at its limit. The limit also leaves the last chunk at least ``max_s / 4``
    (at most 2 s), never a sliver. Cuts sit on the frame grid (multiples of ``1 / fps``).
    """
    if duration_s <= 0:
        return []
    frame = 1.0 / fps
    max_frames = max(1, int(math.floor(max_s * fps + 1e-9)))
    min_tail_s = min(2.0, max_s / 4)
    pauses = sorted(silences)
    chunks: list[tuple[float, float]] = []
    start_frame = 0
    total_frames = frame_count(duration_s, fps)
    while total_frames - start_frame > max_frames:
        start = start_frame * frame
        earliest = start + max_s / 2
        latest = min(start + max_frames * frame, duration_s - min_tail_s)
        cut = latest
        for pause_start, pause_end in reversed(pauses):
            low, high = max(pause_start, earliest), min(pause_end, latest)
            if high > low:
                cut = (low + high) / 2
                break
        cut_frame = min(start_frame + max_frames, max(start_frame + 1, int(round(cut * fps)) if cut < latest else int(math.floor(latest * fps + 1e-9))))
        chunks.append((start, cut_frame * frame))
        start_frame = cut_frame
    chunks.append((start_frame * frame, duration_s))
    return chunks


def write_chunk_audio(request: AvatarRequest, start_s: float, end_s: float, out: Path) -> Path:
    """The host's speech from ``start_s`` to ``end_s`` (episode time) as 16 kHz mono, others muted.

    The length is rounded up to whole frames (640 samples each), so SadTalker renders exactly the chunk.
    """
    frames = frame_count(end_s - start_s, SADTALKER_FPS)
    samples = frames * (SADTALKER_RATE // SADTALKER_FPS)
    audio = np.zeros(samples, dtype=np.float32)
    source_start = start_s - request.audio_offset_s
    skip = max(0.0, -source_start)
    read_from = max(0.0, source_start)
    span = end_s - start_s - skip
    if span > 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        decoded = out.with_suffix(".source.wav")
        try:
            run_ffmpeg(
                ["-y", "-ss", f"{read_from:.6f}", "-t", f"{span:.6f}", "-i", str(request.audio), "-ac", "1", "-ar", str(SADTALKER_RATE), "-c:a", "pcm_s16le", str(decoded)],
                what=f"cutting {request.speaker}'s audio for SadTalker",
            )
            piece, _ = soundfile.read(str(decoded), dtype="float32")
        finally:
            decoded.unlink(missing_ok=True)
        offset = int(round(skip * SADTALKER_RATE))
        piece = piece[: max(0, samples - offset)]
        audio[offset : offset + piece.size] = piece
    if request.alignment.intervals:
        times = start_s + np.arange(samples) / SADTALKER_RATE
        speaking = np.zeros(samples, dtype=bool)
        for interval_start, interval_end in request.alignment.intervals:
            speaking |= (times >= interval_start) & (times < interval_end)
        audio *= speaking
    return write_wav(out, audio, SADTALKER_RATE)


def join_chunks(videos: list[Path], out: Path, *, frames: int, width: int, height: int, fps: int, encoder: str = "libx264", encoder_options: dict[str, str] | None = None) -> Path:
    """Concatenate chunk videos frame after frame (their audio dropped) into exactly ``frames`` frames.

    The concat filter lays each chunk's frames directly after the previous chunk's last frame, whatever
    the chunk files' own audio or container durations say. The picture is fitted into ``width``×``height``
    (letterboxed on black), converted to ``fps``, and the last frame is held if the chunks fall short.
    """
    if not videos:
        raise EngineError("no chunk videos to join", field="video")
    fitted = [
        ffmpeg_graph.input(str(path))
        .video.filter("scale", width, height, force_original_aspect_ratio="decrease")
        .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2")
        .filter("setsar", "1")
        for path in videos
    ]
    joined = ffmpeg_graph.concat(*fitted, v=1, a=0)
    picture = joined.filter("fps", fps=fps).filter("tpad", stop_mode="clone", stop_duration=2)
    with atomic_path(out) as tmp:
        graph = picture.output(str(tmp), vcodec=encoder, pix_fmt="yuv420p", vframes=frames, an=None, **(encoder_options or encoder_options_for(encoder)))
        run_graph(graph, what=f"joining {len(videos)} SadTalker chunk(s)")
    return Path(out)


# --- the engine ------------------------------------------------------------------------------------


class SadTalkerEngine(Engine[AvatarRequest, AvatarResult]):
    name = "sadtalker"
    kind = "avatar"
    version = "1"
    Request = AvatarRequest
    Result = AvatarResult
    Settings = SadTalkerSettings
    settings: SadTalkerSettings

    @classmethod
    def doctor_checks(cls, settings: SadTalkerSettings) -> list[DoctorFinding]:
        return setup_findings(settings) + environment_findings(settings)

    @classmethod
    def resources_for(cls, settings: SadTalkerSettings) -> Resources:
        options = settings
        vram_gb = 4.0 + (2.0 if options.size == 512 else 0.0) + (1.0 if options.enhancer == "gfpgan" else 0.0)
        if options.device == "cpu":
            return Resources(device="cpu", env=ENV)
        return Resources(device="cuda", vram_gb=vram_gb, env=ENV, cpu_fallback=options.cpu_fallback)

    def run(self, request: AvatarRequest, workdir: Path) -> AvatarResult:
        check_setup(self.settings)
        portrait = load_portrait(request.portrait, request.speaker)
        # SadTalker tells images from videos by extension and reads them with OpenCV: hand it a PNG.
        source_image = workdir / "portrait.png"
        if not source_image.is_file():
            from PIL import Image

            with atomic_path(source_image) as tmp:
                Image.fromarray(portrait.rgb).save(tmp, format="PNG")
        silences = silences_between(request.alignment.intervals, request.duration_s) if request.alignment.intervals else self._silences_from_audio(request)
        chunks = plan_chunks(request.duration_s, silences, self.settings.max_chunk_s)
        chunk_videos: list[Path] = []
        devices: set[str] = set()
        for number, (start, end) in enumerate(chunks):
            audio = write_chunk_audio(request, start, end, workdir / "chunks" / f"{number:04d}.wav")
            video, device = self._render_chunk(source_image, audio)
            chunk_videos.append(video)
            devices.add(device)
        frames = frame_count(request.duration_s, request.fps)
        width, height = request.width - request.width % 2, request.height - request.height % 2
        video, encoder, fallback = with_nvenc_fallback(
            lambda name, options: join_chunks(chunk_videos, workdir / "avatar.mp4", frames=frames, width=width, height=height, fps=request.fps, encoder=name, encoder_options=options),
            request.encoder,
            request.encoder_options,
        )
        notes = {"chunks": str(len(chunks)), "device": ",".join(sorted(devices)), "size": str(self.settings.size), "enhancer": self.settings.enhancer}
        if fallback:
            notes["encoder_fallback"] = fallback
        if portrait.downscaled:
            notes["portrait"] = f"downscaled from {portrait.original_size[0]}×{portrait.original_size[1]} (file unchanged)"
        return AvatarResult(video=video, frames=frames, encoder=encoder, notes=notes)

    def _silences_from_audio(self, request: AvatarRequest) -> list[tuple[float, float]]:
        from podforge.engines.portrait import speech_envelope

        envelope = speech_envelope(request.audio, request.audio_offset_s, SADTALKER_FPS, frame_count(request.duration_s, SADTALKER_FPS))
        return silences_in(envelope, SADTALKER_FPS)

    def _render_chunk(self, source_image: Path, audio: Path) -> tuple[Path, str]:
        """One chunk through SadTalker, keyed like a step: a finished chunk whose file is intact is never rendered again."""
        from podforge.runner import run_in_env

        settings = self.settings.runner_settings()
        key = step_key("sadtalker-chunk", self.version, {"image": source_image, "audio": audio, "settings": settings})
        folder = step_workdir("sadtalker-chunk", key)
        done, record = folder / "chunk.mp4", folder / "chunk.json"
        if record.is_file():
            finished = json.loads(record.read_text(encoding="utf-8"))
            if not broken_files(finished["files"]):
                return done, finished["device"]
        scratch = folder / "run"
        if scratch.exists():
            shutil.rmtree(scratch)
        response = run_in_env(ENV, self.name, settings, {"source_image": str(source_image), "driven_audio": str(audio)}, scratch, timeout_s=self.settings.chunk_timeout_s)
        copy_atomic(Path(response.result["video"]), done)
        write_text_atomic(record, json.dumps({"files": files_of(done), "device": response.device}))  # written last: "finished"
        shutil.rmtree(scratch, ignore_errors=True)
        return done, response.device
