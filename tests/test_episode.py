"""The episode DAG end to end, with real engines, real ffmpeg and a real Prefect API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import av
import pytest
from mutagen.id3 import ID3

from conftest import REPO
from podforge.io import sha256_file
from podforge.media.ffmpeg import measure_loudness, probe
from podforge.script import load_script

MEDIA = ("episode.mp4", "episode.mp3", "episode.wav", "episode.srt", "episode.vtt")
DETERMINISTIC_VOICES = {  # Piper's sampling noise is random per call; without it synthesis is bit-reproducible
    "voices": {name: {"settings": {"noise_scale": 0.0, "noise_w_scale": 0.0}} for name in ("joe", "joe-bright")}
}
QA_OFF = {"qa": {"asr": "off"}}


def srt_times(text: str) -> list[tuple[float, float]]:
    def seconds(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(seconds(a), seconds(b)) for a, b in re.findall(r"(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})", text)]


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order."""
    boxes, offset, size_of_file = [], 0, path.stat().st_size
    with open(path, "rb") as handle:
        while offset < size_of_file:
            handle.seek(offset)
            size, kind = int.from_bytes(handle.read(4), "big"), handle.read(4).decode("latin-1")
            if size == 1:
                size = int.from_bytes(handle.read(8), "big")
            boxes.append(kind)
            offset += size or size_of_file
    return boxes


def cli_episode(tmp_path_factory, script: str, slug: str) -> tuple[Path, dict]:
    """``podforge run SCRIPT`` in a fresh process with a home of its own: the episode folder and its manifest."""
    out = tmp_path_factory.mktemp("episode-out")
    env = {**os.environ, "PODFORGE_HOME": str(tmp_path_factory.mktemp("episode-home"))}
    result = subprocess.run([sys.executable, "-m", "podforge", "run", script, "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    episode = out / slug
    return episode, json.loads((episode / "manifest.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's demo command: the demo script through the CLI."""
    return cli_episode(tmp_path_factory, "configs/episodes/demo.md", "demo-why-your-gpu-sits-idle")


def test_demo_writes_every_file_the_manifest_describes(demo):
    episode, manifest = demo
    for name in (*MEDIA, "manifest.json", "report.md"):
        assert (episode / name).is_file(), name
    for name, entry in manifest["files"].items():
        assert sha256_file(episode / name) == entry["sha256"]
        assert (episode / name).stat().st_size == entry["bytes"]
    steps = [step["step"] for step in manifest["steps"]]
    assert steps.count("speech") == len(load_script(REPO / "configs/episodes/demo.md").lines)
    assert {"music", "dialogue", "mix", "captions", "avatar", "layout", "audio", "mux", "publish"} <= set(steps)  # the demo hosts have portraits
    assert all(step["device"] == "cpu" and step["seconds"] >= 0 and step["cached"] is False for step in manifest["steps"])
    assert manifest["video_encoder"] in {"libx264", "h264_nvenc"} and manifest["video_encoder_reason"]
    assert manifest["gpu_seconds"] == 0


def test_demo_two_real_voices_are_heard_line_by_line_by_the_speech_qa(demo):
    from podforge.qa import LineCheck, summarise

    episode, manifest = demo
    lines = load_script(REPO / "configs/episodes/demo.md").lines
    assert {step["engine"] for step in manifest["steps"] if step["step"] == "speech"} == {"piper", "hibari"}
    checks = [LineCheck(**step["notes"]) for step in manifest["steps"] if step["step"] == "qa"]
    assert sorted(check.line for check in checks) == [line.index for line in lines]
    summary = summarise(checks, host_names=["ALEX", "SAM"], asr="whisper", max_wer=0.3)
    for host in summary.hosts:
        assert host.lines == 7 and host.wer < 0.1, host  # tiny.en hears both voices almost word for word
    assert all(check.flagged == (check.wer > 0.3) and check.heard for check in checks)


def test_demo_manifest_checks_its_own_quality_and_the_report_shows_it(demo):
    """Every kind of self-check reaches the manifest: the mix, each delivered file, the captions, each host's
    lip sync and each host's speech heard by the recogniser; and they agree with measurements made here."""
    from podforge.media.captions import caption_stats, parse_srt
    from podforge.media.ffmpeg import measure_loudness

    episode, manifest = demo
    checks = {(check["name"], check["scope"]): check for check in manifest["quality"]}
    assert all(check["passed"] for check in checks.values()), [check for check in checks.values() if not check["passed"]]
    for host in ("ALEX", "SAM"):
        assert checks[("lip sync self-check", host)]["value"] >= 0.3
        assert checks[("speech word error rate", host)]["value"] <= 0.1  # rounded to 2 places in the manifest
    assert {"episode.mp3", "episode.mp4", "episode.wav"} <= {scope for _, scope in checks}
    stats = caption_stats(parse_srt((episode / "episode.srt").read_text()))
    assert checks[("longest caption line", "captions")]["value"] == stats.max_line_chars
    assert checks[("shortest cue", "captions")]["value"] == pytest.approx(stats.min_duration_s, abs=0.01)
    loudness = measure_loudness(episode / "episode.mp3")
    assert manifest["loudness"]["integrated_lufs"] == pytest.approx(loudness.integrated_lufs, abs=0.05)
    report = (episode / "report.md").read_text()
    assert "lip sync self-check" in report and "speech word error rate" in report and "longest caption line" in report


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    """The second two-host script (prices, rates, code, versions, a URL) through the CLI."""
    return cli_episode(tmp_path_factory, "configs/episodes/numbers.md", "numbers-what-it-really-costs")


def test_numbers_episode_meets_every_target_in_its_own_report_and_shows_what_was_said(numbers):
    episode, manifest = numbers
    failed = [check for check in manifest["quality"] if not check["passed"]]
    assert not failed, failed
    names = {check["name"] for check in manifest["quality"]}
    assert {"speech over bed", "speech word error rate", "longest caption line", "shortest cue"} <= names
    said = {(entry["written"], entry["spoken"]) for entry in manifest["spoken_as"]}
    assert ("$15–$30", "fifteen to thirty dollars") in said and ("$4/hr", "four dollars an hour") in said, sorted(said)
    assert all(entry["speaker"] in {"ALEX", "SAM"} and entry["line"] >= 12 for entry in manifest["spoken_as"])
    report = (episode / "report.md").read_text()
    assert "**Read aloud as**" in report and "four dollars an hour" in report


def test_demo_mp4_is_h264_and_aac_and_lasts_speech_plus_intro_and_outro(demo):
    episode, manifest = demo
    info = probe(episode / "episode.mp4")
    kinds = sorted((s.kind, s.codec) for s in info.streams)
    assert kinds == [("audio", "aac"), ("video", "h264")]
    video = next(s for s in info.streams if s.kind == "video")
    audio = next(s for s in info.streams if s.kind == "audio")
    assert (video.width, video.height, round(video.fps)) == (1280, 720, 25)
    assert audio.sample_rate == 48000
    speech_s = next(s for s in manifest["steps"] if s["step"] == "dialogue")["notes"]["seconds_of_speech"]
    assert abs(info.duration_s - (speech_s + 4.0 + 5.0)) < 1.0
    assert 90 < info.duration_s < 180  # about two minutes
    assert top_level_boxes(episode / "episode.mp4").index("moov") < top_level_boxes(episode / "episode.mp4").index("mdat"), "+faststart"
    with av.open(str(episode / "episode.mp4")) as container:
        stream = container.streams.video[0]
        keyframes = sorted(float(packet.pts * stream.time_base) for packet in container.demux(stream) if packet.pts is not None and packet.is_keyframe)
    assert max(b - a for a, b in zip(keyframes, [*keyframes[1:], info.duration_s])) <= 2.0 + 0.05, "a keyframe at least every 2 s"


def test_demo_mp3_is_normalised_to_minus_16_lufs_and_tagged(demo):
    episode, manifest = demo
    loudness = measure_loudness(episode / "episode.mp3")
    assert abs(loudness.integrated_lufs - (-16.0)) <= 1.0
    assert loudness.true_peak_dbtp <= -1.0
    assert manifest["loudness"]["integrated_lufs"] == loudness.integrated_lufs
    tags = ID3(episode / "episode.mp3")
    assert tags.version[:2] == (2, 3)
    assert str(tags["TIT2"]) == "Episode 1: Why Your GPU Sits Idle" and str(tags["TALB"]) == "Podforge Demo"
    assert len(tags.getall("CHAP")) == 4


def test_demo_subtitles_follow_the_speech(demo):
    episode, manifest = demo
    srt = (episode / "episode.srt").read_text()
    times = srt_times(srt)
    assert len(times) > 20
    assert times[0][0] >= 4.0 - 0.01  # nothing before the intro ends
    assert all(a < b for a, b in times) and all(b1 <= a2 + 1e-3 for (_, b1), (a2, _) in zip(times, times[1:]))
    assert times[-1][1] <= manifest["duration_s"] - 5.0 + 0.5
    vtt = (episode / "episode.vtt").read_text()
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == len(times) and "<v SAM>" in vtt


def test_demo_captions_are_readable(demo):
    """At most 42 characters a line and 2 lines a cue, at least 0.83 s; a cue read faster than 17
    characters/s is held until the next cue starts (it could not stay longer)."""
    from podforge.media.captions import MAX_CPS, MIN_CUE_S, caption_stats, parse_srt

    episode, _ = demo
    cues = parse_srt((episode / "episode.srt").read_text())
    stats = caption_stats(cues)
    assert stats.max_line_chars <= 42 and stats.max_lines <= 2 and stats.cues_under_min_s == 0 and stats.overlaps == 0, stats.failures
    assert stats.min_duration_s >= MIN_CUE_S
    for cue, following in zip(cues, cues[1:]):
        if cue.cps > MAX_CPS + 1e-6:
            assert following.start_s - cue.end_s <= 0.0015, f"a fast cue ends before it must: {cue}"


def _episode_script(tmp_path: Path) -> Path:
    token = uuid.uuid4().hex[:8]  # fresh words, so nothing is cached from other tests
    script = tmp_path / "resume.md"
    script.write_text(
        f"---\ntitle: Resume {token}\nmusic: calm lo-fi, take {token}\nhosts:\n  ALEX: {{voice: joe}}\n  SAM: {{voice: joe-bright}}\n---\n"
        f"## One\nALEX: Testing resume, take {token}.\nSAM: The second voice answers.\n## Two\nALEX: And we close.\n"
    )
    return script


def _task_states(flow_run_id: str) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])), task_run_filter=TaskRunFilter())
    states: dict[str, list[str]] = {}
    for run in runs:
        states.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name)  # "speech-ALEX", "mix-4a1" ...
    return states


class Counter:
    """Counts real executions of a function while still calling it."""

    def __init__(self, monkeypatch, owner, name: str):
        self.calls = 0
        real = getattr(owner, name)

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)


def test_a_failed_mux_resumes_without_redoing_upstream_steps(prefect_api, tmp_path, monkeypatch):
    from flows.episode import episode
    from podforge.engines.audiogram import AudiogramEngine
    from podforge.engines.piper import PiperEngine
    from podforge.engines.procedural_music import ProceduralMusicEngine
    import podforge.media.mux

    script = _episode_script(tmp_path)
    config = tmp_path / "deterministic.yaml"
    config.write_text(json.dumps({**DETERMINISTIC_VOICES, **QA_OFF}))  # exact engine counts: no QA retakes

    # Reference: an uninterrupted run in a fresh process with its own cache.
    reference_out = tmp_path / "reference"
    env = {**os.environ, "PODFORGE_HOME": str(tmp_path / "reference-home")}
    done = subprocess.run([sys.executable, "-m", "podforge", "run", str(script), "-c", str(config), "--out", str(reference_out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    speech, music, video = (Counter(monkeypatch, cls, "run") for cls in (PiperEngine, ProceduralMusicEngine, AudiogramEngine))
    real_mux = podforge.media.mux.mux_mp4

    def broken_mux(*args, **kwargs):
        raise OSError("disk full (injected)")

    out = tmp_path / "out"
    monkeypatch.setattr(podforge.media.mux, "mux_mp4", broken_mux)
    with pytest.raises(OSError, match="injected"):
        episode(script=str(script), config=[str(config)], out_dir=str(out))
    assert (speech.calls, music.calls, video.calls) == (3, 1, 1)
    assert not (out / script.stem).exists() and not any(out.rglob("episode.*"))

    monkeypatch.setattr(podforge.media.mux, "mux_mp4", real_mux)
    manifest = episode(script=str(script), config=[str(config)], out_dir=str(out))

    assert (speech.calls, music.calls, video.calls) == (3, 1, 1), "upstream engines ran again"
    states = _task_states(manifest.flow_run_id)
    assert states["speech"] == ["Cached"] * 3
    for name in ("music", "dialogue", "mix", "captions", "video", "audio"):
        assert states[name] == ["Cached"], (name, states)
    assert states["mux"] == ["Completed"] and states["publish"] == ["Completed"]
    cached = {step.step: step.cached for step in manifest.steps}
    assert cached["mux"] is False and cached["video"] is True and cached["audio"] is True and cached["speech"] is True
    assert "qa" not in cached and "qa" not in states, "qa: {asr: off} skips the speech QA step"

    reference = reference_out / manifest.slug
    for name in MEDIA:
        assert sha256_file(out / manifest.slug / name) == sha256_file(reference / name), f"{name} differs from an uninterrupted run"


def test_changing_one_line_resynthesises_only_that_line(prefect_api, tmp_path, monkeypatch):
    from flows.episode import episode
    from podforge.engines.piper import PiperEngine

    script = _episode_script(tmp_path)
    episode(script=str(script), out_dir=str(tmp_path / "out"))
    speech = Counter(monkeypatch, PiperEngine, "run")
    script.write_text(script.read_text().replace("The second voice answers.", "The second voice disagrees."))
    manifest = episode(script=str(script), out_dir=str(tmp_path / "out"))
    assert speech.calls == 1
    assert [step.cached for step in manifest.steps if step.step == "speech"].count(False) == 1
    assert [step.cached for step in manifest.steps if step.step == "qa"].count(False) == 1, "only the changed line is heard again"


# --- one key per step: what a change re-runs ---------------------------------------------------------------

PORTRAITS = REPO / "configs" / "episodes" / "portraits"


def _talking_heads_script(tmp_path: Path, token: str, second_host: str = "SAM") -> Path:
    for name in ("alex.jpg", "sam.jpg"):  # a script reads its portraits from its own folder
        shutil.copyfile(PORTRAITS / name, tmp_path / name)
    script = tmp_path / f"heads-{second_host.lower()}.md"
    script.write_text(
        f"---\ntitle: Heads {token}\nslug: heads-{token}\nmusic: calm lo-fi, take {token}\nhosts:\n"
        f"  ALEX: {{voice: joe, portrait: alex.jpg}}\n  {second_host}: {{voice: joe-bright, portrait: sam.jpg}}\n---\n"
        f"## One\nALEX: Keys follow content, take {token}.\n{second_host}: Names do not.\n"
    )
    return script


def _reused(manifest) -> dict[str, bool]:
    """step -> reused from the cache (every record of that step)."""
    steps: dict[str, bool] = {}
    for step in manifest.steps:
        steps[step.step] = steps.get(step.step, True) and step.cached
    return steps


def test_a_host_name_and_the_gpu_price_change_no_media_step_and_a_loudness_target_only_the_mix_onwards(prefect_api, tmp_path):
    from flows.episode import episode

    out, token = tmp_path / "out", uuid.uuid4().hex[:8]
    first = episode(script=str(_talking_heads_script(tmp_path, token)), out_dir=str(out))
    assert {"avatar", "layout"} <= set(_reused(first)) and not any(_reused(first).values())

    renamed = episode(script=str(_talking_heads_script(tmp_path, token, second_host="SAMANTHA")), overrides={"gpu": {"price_as": "a100"}}, out_dir=str(out / "renamed"))
    reused = _reused(renamed)
    assert renamed.gpu_priced_as == "a100"
    assert [step for step, cached in reused.items() if not cached] == ["captions", "publish"], reused
    srt = (out / "renamed" / renamed.slug / "episode.srt").read_text()
    assert "SAMANTHA: Names do not." in srt, "the sidecar captions name the host; the picture does not"

    quieter = episode(script=str(_talking_heads_script(tmp_path, token, second_host="SAMANTHA")), overrides={"mix": {"target_lufs": -19.0}}, out_dir=str(out / "quieter"))
    reused = _reused(quieter)
    assert {step for step, cached in reused.items() if not cached} == {"mix", "audio", "mux", "publish"}, reused
    assert all(reused[step] for step in ("speech", "music", "dialogue", "captions", "avatar", "layout"))
    assert abs(measure_loudness(out / "quieter" / quieter.slug / "episode.wav").integrated_lufs - (-19.0)) <= 0.5


def test_a_deleted_or_truncated_cached_file_is_made_again_and_the_episode_is_valid(prefect_api, tmp_path):
    from flows.episode import episode
    from podforge.caching import artifacts_dir

    script = _episode_script(tmp_path)
    config = tmp_path / "deterministic.yaml"
    config.write_text(json.dumps(DETERMINISTIC_VOICES))
    out = tmp_path / "out"
    first = episode(script=str(script), config=[str(config)], out_dir=str(out))
    published = {name: sha256_file(out / first.slug / name) for name in MEDIA}

    first_line = next(step.key for step in first.steps if step.step == "speech")
    mixed = next(step.key for step in first.steps if step.step == "mix")
    (artifacts_dir() / "speech" / first_line[:24] / "speech.wav").unlink()
    master = artifacts_dir() / "mix" / mixed[:24] / "master.wav"
    master.write_bytes(master.read_bytes()[: master.stat().st_size // 3])  # a truncated intermediate

    again = episode(script=str(script), config=[str(config)], out_dir=str(out))
    reused = _reused(again)
    assert not reused["speech"] and not reused["mix"], reused
    assert [step.cached for step in again.steps if step.step == "speech"].count(False) == 1, "only the damaged line is spoken again"
    for name in MEDIA:
        assert sha256_file(out / again.slug / name) == published[name], f"{name}: the remade episode is the same episode"
    assert abs(probe(out / again.slug / "episode.mp4").duration_s - again.duration_s) < 0.5
