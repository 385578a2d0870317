"""Bad input through the real CLI: exit 2, one line naming file and field, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

GOOD_BODY = "---\ntitle: Fine\nhosts:\n  ALEX: {voice: joe}\n---\nALEX: Hello.\n"


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PODFORGE_HOME": str(home), "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "podforge", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


CASES = [
    ("empty.md", b"", [], "empty"),
    ("blank.md", b"  \n\n\t ", [], "empty"),
    ("binary.md", bytes(range(256)), [], "binary"),
    ("latin1.md", "ALEX: d\u00e9j\u00e0 vu".encode("latin-1"), [], "not UTF-8"),
    ("unknown-speaker.md", GOOD_BODY + "BOB: Who am I?\n", [], "unknown speaker 'BOB'"),
    ("bad-yaml.md", "---\ntitle: [oops\n---\nALEX: hi\n", [], "front matter: malformed YAML"),
    ("no-lines.md", "---\ntitle: Nothing said\n---\n## Just a heading\n", [], "body: no spoken lines"),
    ("slug-dotdot.md", "---\nslug: ../../outside\n---\nALEX: hi\n", [], "slug: must be lowercase"),
    ("slug-shell.md", "---\nslug: 'ep$(reboot)'\n---\nALEX: hi\n", [], "slug: must be lowercase"),
    ("unknown-voice.md", "---\nhosts: {ALEX: {voice: nobody}}\n---\nALEX: hi\n", [], "hosts.ALEX.voice: unknown voice 'nobody'"),
    ("good.md", GOOD_BODY, ["--music", "no-such-engine"], "use.music: unknown engine 'no-such-engine'"),
    ("good.md", GOOD_BODY, ["--video", "piper"], "makes speech, not video"),
    ("good.md", GOOD_BODY, ["--music", "musicgen"], "environment 'musicgen' is not built; run `podforge envs build musicgen`"),
    ("portrait.md", "---\nhosts: {ALEX: {portrait: notes.txt}}\n---\nALEX: hi\n", [], "hosts.ALEX.portrait"),
]


@pytest.mark.parametrize(("name", "content", "extra", "expected"), CASES, ids=[c[0] + "|" + " ".join(c[2]) for c in CASES])
def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, name, content, extra, expected):
    script = write(tmp_path, name, content)
    (tmp_path / "notes.txt").write_text("not a picture")
    out = tmp_path / "out"
    earlier = out / "earlier-episode" / "episode.mp3"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier episode")
    home = tmp_path / "home"

    result = run_cli("run", str(script), "--out", str(out), *extra, home=home)

    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert expected in message
    if name != "good.md":
        assert str(script.parent) in message
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["earlier-episode", "earlier-episode/episode.mp3"]
    assert earlier.read_bytes() == b"an earlier episode"
    assert not home.exists(), "nothing may be written outside the output directory"


def test_malformed_config_file_is_named(tmp_path):
    script = write(tmp_path, "good.md", GOOD_BODY)
    config = write(tmp_path, "studio.yaml", "mix:\n  target_lufs: -16\n   bad_indent: 1\n")
    result = run_cli("run", str(script), "--config", str(config), "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2
    assert f"{config}: malformed YAML at line 3" in result.stderr
    assert not (tmp_path / "out").exists()


def test_config_value_errors_name_the_field(tmp_path):
    script = write(tmp_path, "good.md", GOOD_BODY)
    config = write(tmp_path, "studio.yaml", "mix:\n  target_lufs: loud\n")
    result = run_cli("run", str(script), "--config", str(config), "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2
    assert "mix.target_lufs" in result.stderr and str(config) in result.stderr


def test_an_ffmpeg_that_is_not_there_fails_before_any_speech(tmp_path):
    """The flow first runs ffmpeg (to choose the H.264 encoder) while the lines are spoken: a configured
    binary that does not exist is caught by the plan, in one line naming the field."""
    script = write(tmp_path, "good.md", GOOD_BODY)
    config = write(tmp_path, "studio.yaml", f"ffmpeg: {tmp_path / 'no-such-ffmpeg'}\n")
    result = run_cli("run", str(script), "--config", str(config), "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2, result.stderr
    assert f"ffmpeg: ffmpeg binary not found: {tmp_path / 'no-such-ffmpeg'}" in result.stderr  # the field, then what is wrong
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "home").exists(), "caught by the pre-flight: no Prefect server, no speech"


def test_missing_script_file(tmp_path):
    result = run_cli("run", str(tmp_path / "nope.md"), "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2
    assert "nope.md: no such file" in result.stderr


def test_a_recogniser_that_is_not_one_is_named_by_its_qa_field(tmp_path):
    script = write(tmp_path, "good.md", GOOD_BODY)
    config = write(tmp_path, "studio.yaml", "qa: {asr: piper}\n")
    result = run_cli("run", str(script), "--config", str(config), "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "qa.asr: engine 'piper' makes speech, not asr" in result.stderr


def test_an_engine_name_yaml_reads_as_something_else_is_an_unknown_engine(tmp_path):
    script = write(tmp_path, "good.md", GOOD_BODY)
    config = write(tmp_path, "studio.yaml", "use: {music: off}\nvoices: {joe: {engine: piper}}\n")
    result = run_cli("run", str(script), "--config", str(config), "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{config}: use.music: unknown engine False; known engines: audiogram, coqui" in result.stderr
    assert not (tmp_path / "out").exists()
