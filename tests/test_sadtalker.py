"""The SadTalker engine's own logic, with the real ffmpeg: setup checks, chunks, the join, the runner's CLI.

SadTalker itself (torch 2.0 and its weights) is not installed here; the heavy test at the end runs it
where it is (``SADTALKER_HOME`` set and ``podforge envs build sadtalker`` done).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from podforge.engines.base import AvatarRequest
from podforge.engines.sadtalker import (
    SadTalkerEngine,
    SadTalkerSettings,
    environment_findings,
    join_chunks,
    plan_chunks,
    setup_findings,
    silences_between,
    silences_in,
    write_chunk_audio,
)
from podforge.errors import ConfigError, EngineError
from podforge.media.ffmpeg import probe, run_ffmpeg
from podforge.media.layout import RawVideoWriter
from podforge.timing import SpeakerAlignment

REPO = Path(__file__).resolve().parent.parent
SADTALKER_OPTIONS = {
    # The options of SadTalker's inference.py (v0.0.2, OpenTalker/SadTalker at cd4c046), recorded by hand.
    "--driven_audio", "--source_image", "--ref_eyeblink", "--ref_pose", "--checkpoint_dir", "--result_dir",
    "--pose_style", "--batch_size", "--size", "--expression_scale", "--input_yaw", "--input_pitch",
    "--input_roll", "--enhancer", "--background_enhancer", "--cpu", "--face3dvis", "--still",
    "--preprocess", "--verbose", "--old_version",
}


@pytest.fixture(scope="module")
def runner():
    """external/sadtalker/runner.py, loaded the way its environment runs it (``_common`` importable)."""
    sys.path.insert(0, str(REPO / "external" / "_common"))
    try:
        spec = importlib.util.spec_from_file_location("sadtalker_runner", REPO / "external" / "sadtalker" / "runner.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "external" / "_common"))
    return module


@pytest.fixture
def no_sadtalker_home(monkeypatch):
    monkeypatch.delenv("SADTALKER_HOME", raising=False)


def runner_settings(**overrides) -> dict:
    settings = {
        "home": "/opt/SadTalker", "checkpoint_dir": "/data/checkpoints", "gfpgan_dir": "/data/gfpgan", "size": 256,
        "enhancer": "none", "preprocess": "full", "still": True, "batch_size": 2, "expression_scale": 1.0,
        "pose_style": 0, "device": "cuda", "cpu_fallback": False,
    }
    settings.update(overrides)
    return settings


# --- the command line --------------------------------------------------------------------------------


def test_command_line_for_sadtalkers_inference_script(runner, tmp_path):
    command = runner.inference_command("/env/bin/python", runner_settings(), tmp_path / "face.png", tmp_path / "a.wav", tmp_path / "out", cpu=False)
    assert command[:2] == ["/env/bin/python", "/opt/SadTalker/inference.py"]
    assert command[-1] == "--still"
    options = dict(zip(command[2:-1:2], command[3:-1:2]))
    assert options == {
        "--driven_audio": str(tmp_path / "a.wav"),
        "--source_image": str(tmp_path / "face.png"),
        "--checkpoint_dir": "/data/checkpoints",
        "--result_dir": str(tmp_path / "out"),
        "--size": "256",
        "--preprocess": "full",
        "--batch_size": "2",
        "--expression_scale": "1.0",
        "--pose_style": "0",
    }
    assert set(options) | {"--still"} <= SADTALKER_OPTIONS
    assert "--cpu" not in command and "--enhancer" not in command


def test_command_line_options_switch_on_and_off(runner, tmp_path):
    command = runner.inference_command(
        "python", runner_settings(size=512, enhancer="gfpgan", preprocess="crop", still=False, batch_size=8, expression_scale=1.3, pose_style=45), tmp_path / "f.png", tmp_path / "a.wav", tmp_path, cpu=True
    )
    assert command[command.index("--enhancer") + 1] == "gfpgan"
    assert command[command.index("--size") + 1] == "512"
    assert command[command.index("--preprocess") + 1] == "crop"
    assert command[command.index("--expression_scale") + 1] == "1.3"
    assert command[command.index("--pose_style") + 1] == "45"
    assert "--cpu" in command and "--still" not in command
    assert {arg for arg in command if arg.startswith("--")} <= SADTALKER_OPTIONS


def test_weights_folder_is_linked_where_sadtalker_looks_for_it(runner, tmp_path):
    weights = tmp_path / "seeded" / "gfpgan"
    weights.mkdir(parents=True)
    (weights / "detection_Resnet50_Final.pth").write_bytes(b"x")
    workdir = tmp_path / "run"
    workdir.mkdir()
    runner.link_weights(workdir, weights)
    runner.link_weights(workdir, weights)  # idempotent
    assert (workdir / "gfpgan" / "weights" / "detection_Resnet50_Final.pth").read_bytes() == b"x"
    other = tmp_path / "other"
    other.mkdir()
    runner.link_weights(workdir, other)
    assert (workdir / "gfpgan" / "weights").resolve() == other.resolve()


def test_output_finder_picks_the_video_sadtalker_named_by_time(runner, tmp_path):
    result_dir = runner.fresh_result_dir(tmp_path)
    stale = result_dir / "2024_01_01_00.00.00.mp4"
    stale.write_bytes(b"old")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    started = time.time()
    (result_dir / "2024_05_05_10.11.12").mkdir()  # its intermediate folder
    (result_dir / "2024_05_05_10.11.12" / "face.mp4").write_bytes(b"intermediate")
    (result_dir / "temp_face.mp4").write_bytes(b"temporary")
    made = result_dir / "2024_05_05_10.11.12.mp4"
    made.write_bytes(b"video")
    assert runner.find_result_video(result_dir, started) == made


def test_output_finder_says_what_it_found_when_there_is_no_video(runner, tmp_path):
    result_dir = runner.fresh_result_dir(tmp_path)
    (result_dir / "log.txt").write_text("Can't get the coeffs of the input")
    with pytest.raises(RuntimeError, match="wrote no video.*log.txt"):
        runner.find_result_video(result_dir, time.time())


def test_ffmpeg_is_put_first_on_sadtalkers_path(runner, tmp_path):
    import imageio_ffmpeg

    path = runner.path_with_ffmpeg(tmp_path, imageio_ffmpeg.get_ffmpeg_exe(), "/usr/bin:/bin")
    assert path == f"{tmp_path / 'bin'}:/usr/bin:/bin"
    runner.path_with_ffmpeg(tmp_path, imageio_ffmpeg.get_ffmpeg_exe(), "")  # again: the link is replaced
    found = shutil.which("ffmpeg", path=path)
    assert found == str(tmp_path / "bin" / "ffmpeg")
    version = subprocess.run([found, "-version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("ffmpeg version")


def test_python_path_folders_come_first_for_sadtalker_and_nothing_else_changes(runner, tmp_path):
    ffmpeg = str(tmp_path / "ffmpeg-binary")
    Path(ffmpeg).write_text("")
    environ = {"PATH": "/usr/bin", "PYTHONPATH": "/common", "HOME": "/home/x"}
    seam = tmp_path / "seam"
    environment = runner.inference_environment(tmp_path, {"python_path": [str(seam)]}, environ, ffmpeg)
    assert environment["PYTHONPATH"] == f"{seam}:/common" and environment["HOME"] == "/home/x"
    assert environment["PATH"] == f"{tmp_path / 'bin'}:/usr/bin"
    assert runner.inference_environment(tmp_path, {}, environ, ffmpeg)["PYTHONPATH"] == "/common"
    assert "PYTHONPATH" not in runner.inference_environment(tmp_path, {"python_path": []}, {"PATH": "/usr/bin"}, ffmpeg)


def test_the_doctor_runs_sadtalkers_cli_only_in_a_built_environment(no_sadtalker_home, tmp_path):
    # the checks themselves run in the heavy test (tests/test_sadtalker_smoke.py), where the environment exists
    assert environment_findings(SadTalkerSettings(home=complete_checkout(tmp_path))) == []  # not built here: `envs doctor` says "build it" instead


def test_each_run_gets_an_empty_result_folder(runner, tmp_path):
    first = runner.fresh_result_dir(tmp_path)
    (first / "2024_01_01_00.00.00.mp4").write_bytes(b"from a failed attempt")
    second = runner.fresh_result_dir(tmp_path)
    assert second == first and list(second.iterdir()) == []


# --- setup checks --------------------------------------------------------------------------------------


def test_without_a_checkout_the_engine_says_how_to_get_sadtalker(no_sadtalker_home, tmp_path):
    request = AvatarRequest(speaker="ALEX", portrait=tmp_path / "p.png", audio=tmp_path / "a.wav", duration_s=3)
    with pytest.raises(EngineError) as caught:
        SadTalkerEngine({}).run(request, tmp_path)
    message = str(caught.value)
    assert "SADTALKER_HOME" in message and "external/sadtalker/README.md" in message
    assert caught.value.field == "engines.sadtalker.settings.home"


def test_an_incomplete_checkout_lists_every_missing_file(no_sadtalker_home, tmp_path):
    home = tmp_path / "SadTalker"
    (home / "src" / "config").mkdir(parents=True)
    (home / "inference.py").write_text("")
    (home / "checkpoints").mkdir()
    (home / "checkpoints" / "SadTalker_V0.0.2_256.safetensors").write_bytes(b"")
    checkout, checkpoints, weights = setup_findings(SadTalkerSettings(home=home, enhancer="gfpgan"))
    assert checkout.level == "ok"
    assert checkpoints.level == "warn" and "mapping_00109-model.pth.tar" in checkpoints.message and "download_models.sh" in checkpoints.fix
    assert weights.level == "warn" and all(name in weights.message for name in ("alignment_WFLW_4HG.pth", "GFPGANv1.4.pth", "parsing_parsenet.pth"))
    with pytest.raises(EngineError, match="mapping_00109-model.pth.tar"):
        SadTalkerEngine({"home": str(home)}).run(AvatarRequest(speaker="A", portrait=home / "x.png", audio=home / "a.wav", duration_s=1), tmp_path)


def test_a_complete_setup_passes_every_check(monkeypatch, tmp_path):
    home = tmp_path / "SadTalker"
    (home / "src" / "config").mkdir(parents=True)
    (home / "inference.py").write_text("")
    for name in ("SadTalker_V0.0.2_512.safetensors", "mapping_00229-model.pth.tar"):
        (home / "checkpoints").mkdir(exist_ok=True)
        (home / "checkpoints" / name).write_bytes(b"")
    (home / "gfpgan" / "weights").mkdir(parents=True)
    for name in ("alignment_WFLW_4HG.pth", "detection_Resnet50_Final.pth"):
        (home / "gfpgan" / "weights" / name).write_bytes(b"")
    monkeypatch.setenv("SADTALKER_HOME", str(home))
    checks = setup_findings(SadTalkerSettings(size=512, preprocess="crop"))
    assert all(check.level == "ok" for check in checks), [check.message for check in checks]


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError) as caught:
        SadTalkerEngine({"size": 384})
    assert caught.value.field == "engines.sadtalker.settings.size"


def test_resources_ask_for_the_gpu_in_the_sadtalker_environment():
    resources = SadTalkerEngine.resources_for(SadTalkerSettings(size=512, enhancer="gfpgan"))
    assert (resources.device, resources.env, resources.vram_gb) == ("cuda", "sadtalker", 7.0)
    assert SadTalkerEngine.resources_for(SadTalkerSettings(device="cpu")).device == "cpu"


# --- chunks --------------------------------------------------------------------------------------------


def test_short_audio_is_one_chunk():
    assert plan_chunks(42.0, [], max_s=60) == [(0.0, 42.0)]


def test_without_pauses_chunks_are_cut_at_the_limit_on_the_frame_grid():
    chunks = plan_chunks(150.01, [], max_s=60)
    assert chunks == [(0.0, 60.0), (60.0, 120.0), (120.0, 150.01)]


def test_chunks_are_cut_in_the_latest_pause_of_the_second_half():
    pauses = [(10.0, 10.5), (41.0, 41.6), (52.3, 52.8), (75.0, 75.2), (118.0, 119.0)]
    chunks = plan_chunks(130.0, pauses, max_s=60)
    # 52.55 s is the middle of the latest pause after 30 s; on the 25 fps grid: 52.56 s. The next chunk
    # finds no pause between 82.56 s and 112.56 s (75 s would make it too short) and is cut at the limit.
    assert chunks == [(0.0, pytest.approx(52.56)), (pytest.approx(52.56), pytest.approx(112.56)), (pytest.approx(112.56), 130.0)]
    for (_, end), (start, _) in zip(chunks, chunks[1:]):
        assert start == end  # contiguous
    for start, end in chunks:
        assert end - start <= 60.0 + 1e-9
        assert abs(start * 25 - round(start * 25)) < 1e-6
    assert all(end - start >= 30.0 for start, end in chunks[:-1])


@pytest.mark.parametrize("duration", [0.5, 59.99, 60.0, 60.05, 61.3, 599.97, 3600.0])
def test_chunks_cover_the_audio_exactly(duration):
    pauses = [(t, t + 0.4) for t in np.arange(3.0, duration, 7.3)]
    chunks = plan_chunks(duration, pauses, max_s=60)
    assert chunks[0][0] == 0.0 and chunks[-1][1] == duration
    assert all(0 < end - start <= 60.0 + 1e-9 for start, end in chunks)
    assert sum(end - start for start, end in chunks) == pytest.approx(duration)


def test_pauses_come_from_the_gaps_between_a_hosts_lines():
    assert silences_between([(1.0, 4.0), (4.1, 6.0), (9.0, 10.0)], 12.0) == [(0.0, 1.0), (6.0, 9.0), (10.0, 12.0)]


def test_pauses_come_from_the_energy_when_there_are_no_lines():
    envelope = np.concatenate([np.full(50, 0.3), np.zeros(20), np.full(30, 0.2), np.full(5, 0.001), np.full(10, 0.25)])
    assert silences_in(envelope, 25) == [(2.0, 2.8)]


def test_chunk_audio_is_16k_whole_frames_with_other_hosts_muted(tmp_path):
    rate = 22050
    tone = (0.5 * np.sin(2 * np.pi * 220 * np.arange(10 * rate) / rate)).astype(np.float32)
    source = tmp_path / "dialogue.wav"
    soundfile.write(source, tone, rate)
    request = AvatarRequest(
        speaker="SAM", portrait=tmp_path / "p.png", audio=source, audio_offset_s=2.0, duration_s=14.0,
        alignment=SpeakerAlignment(intervals=[(4.0, 6.0)]),
    )
    out = write_chunk_audio(request, 1.0, 7.04, tmp_path / "chunk.wav")
    audio, chunk_rate = soundfile.read(out, dtype="float32")
    assert chunk_rate == 16000 and audio.size == 151 * 640  # 6.04 s: 151 frames of 640 samples
    t = 1.0 + np.arange(audio.size) / 16000
    assert np.abs(audio[(t < 3.99) | (t > 6.01)]).max() == 0.0  # before the dialogue, and others' lines
    assert np.sqrt(np.mean(audio[(t > 4.1) & (t < 5.9)] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


# --- the join --------------------------------------------------------------------------------------------


def numbered_video(path: Path, first: int, count: int, size=(96, 64), with_audio_s: float | None = None, bits: int = 8) -> Path:
    """A 25 fps video whose frame k shows the number first + k as black/white bars (one bit each)."""
    width, height = size
    silent = path.with_suffix(".silent.mp4")
    with RawVideoWriter(silent if with_audio_s else path, width, height, 25, encoder_options={"crf": "10", "preset": "ultrafast"}) as writer:
        for number in range(first, first + count):
            frame = np.zeros((height, width, 3), np.uint8)
            for bit in range(bits):
                if number >> bit & 1:
                    frame[:, bit * width // bits : (bit + 1) * width // bits] = 255
            writer.write(frame)
    if with_audio_s:
        # SadTalker's chunk files carry the chunk's audio; make it run past the picture.
        run_ffmpeg(["-y", "-i", str(silent), "-f", "lavfi", "-i", f"sine=frequency=300:duration={with_audio_s}", "-c:v", "copy", "-c:a", "aac", str(path)], what="adding audio")
        silent.unlink()
    return path


def read_numbers(path: Path, bits: int = 8) -> list[int]:
    numbers = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            picture = frame.to_ndarray(format="gray")
            height, width = picture.shape
            numbers.append(sum(1 << bit for bit in range(bits) if picture[height // 2, bit * width // bits + width // (2 * bits)] > 128))
    return numbers


def test_joined_chunks_continue_frame_after_frame(tmp_path):
    counts = [17, 25, 13]
    videos, first = [], 0
    for index, count in enumerate(counts):
        videos.append(numbered_video(tmp_path / f"chunk{index}.mp4", first, count, with_audio_s=count / 25 + 0.3))
        first += count
    out = join_chunks(videos, tmp_path / "joined.mp4", frames=sum(counts), width=96, height=64, fps=25)
    assert read_numbers(out) == list(range(sum(counts)))
    info = probe(out)
    assert [s.kind for s in info.streams] == ["video"]
    assert info.duration_s == pytest.approx(sum(counts) / 25, abs=0.021)


def test_join_holds_the_last_frame_and_fits_the_picture(tmp_path):
    videos = [numbered_video(tmp_path / "a.mp4", 0, 10), numbered_video(tmp_path / "b.mp4", 10, 10)]
    out = join_chunks(videos, tmp_path / "joined.mp4", frames=26, width=192, height=192, fps=25)
    assert read_numbers(out) == list(range(20)) + [19] * 6
    video = probe(out).streams[0]
    assert (video.width, video.height, video.codec) == (192, 192, "h264")


def complete_checkout(root: Path) -> Path:
    """A checkout folder with every file the setup check looks for (empty: nothing here runs them)."""
    home = root / "SadTalker"
    (home / "src" / "config").mkdir(parents=True)
    (home / "inference.py").write_text("")
    (home / "checkpoints").mkdir()
    for name in ("SadTalker_V0.0.2_256.safetensors", "mapping_00109-model.pth.tar"):
        (home / "checkpoints" / name).write_bytes(b"")
    (home / "gfpgan" / "weights").mkdir(parents=True)
    for name in ("alignment_WFLW_4HG.pth", "detection_Resnet50_Final.pth"):
        (home / "gfpgan" / "weights" / name).write_bytes(b"")
    return home


def test_a_failed_chunk_is_retried_alone_and_the_chunks_join_seamlessly(tmp_path, monkeypatch):
    """The engine's chunking, caching and joining, with a stand-in for the SadTalker runner.

    The stand-in renders what SadTalker would for a chunk: floor(samples / 640) frames at 25 fps (with the
    audio muxed in), each frame numbered by its place in the episode; it fails once on the second chunk.
    """
    import podforge.runner
    from podforge.runner import RunnerResponse

    skimage_data = pytest.importorskip("skimage.data")
    portrait = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(portrait)
    rate = 16000
    speech = (0.3 * np.sin(2 * np.pi * 200 * np.arange(12 * rate) / rate)).astype(np.float32)
    audio = tmp_path / "dialogue.wav"
    soundfile.write(audio, speech, rate)
    calls: list[str] = []
    failures = {"0001.wav": 1}

    def stand_in(env, engine, settings, request, workdir, *, timeout_s):
        chunk_wav = Path(request["driven_audio"])
        calls.append(chunk_wav.name)
        assert (env, engine, settings["still"], settings["preprocess"]) == ("sadtalker", "sadtalker", True, "full")
        assert Path(request["source_image"]).suffix == ".png"
        if failures.get(chunk_wav.name, 0):
            failures[chunk_wav.name] -= 1
            raise EngineError("CUDA out of memory (stand-in)", field="engines.sadtalker")
        earlier = sorted(p for p in chunk_wav.parent.glob("*.wav") if p.name < chunk_wav.name)
        first = sum(soundfile.info(str(p)).frames // 640 for p in earlier)
        count = soundfile.info(str(chunk_wav)).frames // 640
        workdir.mkdir(parents=True, exist_ok=True)
        video = numbered_video(workdir / "sadtalker.mp4", first, count, size=(128, 96), with_audio_s=count / 25 + 0.2, bits=12)
        return RunnerResponse(result={"video": str(video)}, device="cuda")

    monkeypatch.setattr(podforge.runner, "run_in_env", stand_in)
    engine = SadTalkerEngine({"home": str(complete_checkout(tmp_path)), "max_chunk_s": 5})
    request = AvatarRequest(
        speaker="ALEX", portrait=portrait, audio=audio, duration_s=12.0, width=128, height=96,
        alignment=SpeakerAlignment(intervals=[(0.2, 3.1), (3.5, 6.6), (7.3, 11.8)]),
    )
    with pytest.raises(EngineError, match="out of memory"):
        engine.run(request, tmp_path / "first")
    assert calls == ["0000.wav", "0001.wav"]

    calls.clear()
    result = engine.run(request, tmp_path / "second")
    assert calls == ["0001.wav", "0002.wav", "0003.wav"]  # the finished first chunk was not rendered again
    assert result.notes["chunks"] == "4" and result.frames == 300
    assert read_numbers(result.video, bits=12) == list(range(300))


def test_the_last_chunk_is_never_a_sliver():
    chunks = plan_chunks(120.2, [], max_s=60)
    assert chunks[-1][1] - chunks[-1][0] >= 2.0 - 1e-9
    assert all(end - start <= 60.0 + 1e-9 for start, end in chunks)
