"""Hostile inputs through the real CLI, into an output folder that already holds a real episode.

Each input either fails with exit 2 and one line naming the file and the field, or makes a valid episode.
After every failure the earlier episode is byte-identical and nothing else was written; no run prints a
traceback or leaves a process behind. A full disk and a read-only output folder are real file systems (a
small tmpfs where this user may mount one, else a file size rlimit and a read-only folder). ``kill -9``
at several points of publishing (deterministic: the ``PODFORGE_FAULT`` points, at which the process
SIGKILLs itself) leaves the earlier episode or the new one, complete, never a mix.

The CLI runs against the test session's Prefect API (no temporary server per run), with the session's
PODFORGE_HOME, so steps made by one run are reused by the next and only three episodes are really made.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import REPO
from podforge.io import sha256_file

EARLIER = "---\ntitle: Earlier episode\nshow: Hostile Show\n---\nALEX: This episode was here first.\nSAM: And it stays as it is.\n"
TOKEN_VARIABLE = "PODFORGE_TEST_CORPUS_TOKEN"


@pytest.fixture(scope="module")
def api_url(prefect_api) -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def run_cli(*args: str, api_url: str, fault: str = "", extra_env: dict[str, str] | None = None, preexec=None) -> subprocess.CompletedProcess:
    """``podforge`` in a fresh process; afterwards no process that it started may still exist."""
    token = uuid.uuid4().hex
    env = {**os.environ, "PREFECT_API_URL": api_url, "COLUMNS": "300", TOKEN_VARIABLE: token, **(extra_env or {})}
    env.pop("PODFORGE_FAULT", None)
    if fault:
        env["PODFORGE_FAULT"] = fault
    result = subprocess.run([sys.executable, "-m", "podforge", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600, preexec_fn=preexec)
    assert not leftover_processes(token), f"processes left behind by podforge {' '.join(args)}"
    return result


def leftover_processes(token: str) -> list[int]:
    """Processes whose environment carries ``token`` (every process a run starts inherits it)."""
    found = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if process.environ().get(TOKEN_VARIABLE) == token:
                found.append(process.pid)
    return found


def error_line(result: subprocess.CompletedProcess) -> str:
    """The run's one error line; nothing on stderr may be a traceback or a second error."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> sha256."""
    return {path.relative_to(folder).as_posix(): sha256_file(path) for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, api_url) -> tuple[Path, Path, dict[str, str]]:
    """A real earlier episode in the output folder: (output folder, its script, snapshot of the output folder)."""
    folder = tmp_path_factory.mktemp("hostile")
    script = folder / "earlier.md"
    script.write_text(EARLIER)
    out = folder / "out"
    result = run_cli("run", str(script), "--out", str(out), api_url=api_url)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, script, snapshot(out)


def hostile_scripts(folder: Path) -> list[tuple[str, list[str], str, str]]:
    """(script name, extra CLI arguments, expected field, expected words) for inputs refused in the pre-flight.

    A field of None: the error is in a command-line option, and the line names the option's config field only."""
    megaline = " ".join(["gpu"] * 6000)  # 24 KB, one line, no punctuation
    (folder / "faces").mkdir(exist_ok=True)
    link = folder / "faces" / "host.jpg"
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")
    cases = {
        "megaline.md": ("---\ntitle: Mega\n---\nALEX: " + megaline + "\n", [], "line 4", "at most 5,000 (limits.max_line_chars)"),
        "unknown-language.md": ("---\ntitle: Klingon\nlanguage: tlh\n---\nALEX: Qapla'\n", [], "language", "unknown language 'tlh'"),
        "wrong-language.md": ("---\ntitle: Bonjour\nlanguage: fr\n---\nALEX: Bonjour à tous.\n", [], "hosts.ALEX.voice", "speaks en, not 'fr'"),
        "portrait-absolute.md": ("---\nhosts: {ALEX: {portrait: /etc/passwd}}\n---\nALEX: hi\n", [], "hosts.ALEX.portrait", "absolute path"),
        "portrait-dotdot.md": ("---\nhosts: {ALEX: {portrait: ../../../etc/passwd}}\n---\nALEX: hi\n", [], "hosts.ALEX.portrait", "'..'"),
        "portrait-symlink.md": ("---\nhosts: {ALEX: {portrait: faces/host.jpg}}\n---\nALEX: hi\n", [], "hosts.ALEX.portrait", "link to /etc/passwd"),
        "too-many-lines.md": ("---\ntitle: Long\n---\n" + "".join(f"ALEX: Line {i}.\n" for i in range(1001)), [], "body", "1001 spoken lines"),
        "unknown-engine.md": (EARLIER.replace("Earlier episode", "Engines"), ["--music", "nope"], None, "use.music: unknown engine 'nope'; known engines:"),
        "same-slug.md": ("---\ntitle: Another episode\nslug: earlier-episode\nshow: Hostile Show\n---\nALEX: Something else.\n", [], "slug", "already holds another episode, 'Earlier episode'"),
        "unreadable-line.md": ("---\ntitle: Hanzi\n---\nALEX: Hello.\nSAM: 你好，今天我们谈谈显卡。\n", [], "line 5", "SAM's line has only 10 Han letters"),
        "valid.md": (EARLIER.replace("Earlier episode", "Going nowhere"), [], "", ""),
    }
    for name, (text, *_rest) in cases.items():
        (folder / name).write_text(text)
    return [(name, extra, field, words) for name, (_text, extra, field, words) in cases.items()]


def test_hostile_inputs_fail_in_one_line_and_leave_the_earlier_episode_alone(earlier, api_url, tmp_path):
    out, _, before = earlier
    file_in_the_way = tmp_path / "a-file"
    file_in_the_way.write_text("not a folder")
    cases = hostile_scripts(tmp_path)
    runs = [(tmp_path / name, ["--out", str(out), *extra], f"{tmp_path / name}: {field}: " if field else "error: ", words) for name, extra, field, words in cases if name != "valid.md"]
    runs += [
        (tmp_path / "valid.md", ["--out", str(file_in_the_way)], f"{file_in_the_way}: out_dir: ", "is a file, not a folder"),
        (tmp_path / "valid.md", ["--out", str(file_in_the_way / "sub")], f"{file_in_the_way / 'sub'}: out_dir: ", "is a file, not a folder"),
    ]
    for script, arguments, where, words in runs:
        result = run_cli("run", str(script), *arguments, api_url=api_url)
        line = error_line(result)
        assert result.returncode == 2, (script.name, result.stderr)
        assert where in line and words in line, (script.name, line)
        assert snapshot(out) == before, f"{script.name} changed the output folder"
    assert file_in_the_way.read_text() == "not a folder"


SPECIAL = (
    "---\ntitle: '显卡为什么空闲 <script>alert(1)</script> **bold** {\\pos(1,1)} -->'\nshow: '<b>Hostile</b> Show'\n---\n"
    "ALEX: The GPU waits --> for data {\\an8} <i>here</i>.\n"
    "SAM: 你好，今天我们谈谈显卡 means: today we talk about graphics cards.\n"
)


@pytest.fixture(scope="module")
def special(earlier, api_url, tmp_path_factory) -> tuple[Path, dict]:
    """A valid episode made from a Chinese title with HTML and subtitle specials and a line in Chinese."""
    out, _, _ = earlier
    script = tmp_path_factory.mktemp("special") / "special.md"
    script.write_text(SPECIAL)
    result = run_cli("run", str(script), "--out", str(out), api_url=api_url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning: line 6 (SAM): 10 Han letters" in result.stderr
    (folder,) = [path for path in out.iterdir() if path.name.startswith("xian-ka")]
    return folder, json.loads((folder / "manifest.json").read_text())


def test_a_non_latin_title_gets_its_own_slug_and_specials_are_escaped(special, earlier):
    folder, manifest = special
    out, _, before = earlier
    assert folder.name.startswith("xian-ka-wei-shen-me-kong-xian-script-alert-1")
    assert {name: digest for name, digest in snapshot(out).items() if name.startswith("earlier-episode/")} == {
        name: digest for name, digest in before.items() if name.startswith("earlier-episode/")
    }, "a new episode never replaces another"
    for name, entry in manifest["files"].items():
        assert sha256_file(folder / name) == entry["sha256"]
    report = (folder / "report.md").read_text()
    assert "<script>" not in report and "<b>" not in report and "&lt;script&gt;" in report and "\\*\\*bold\\*\\*" in report
    assert any("10 Han letters, which voice" in warning for warning in manifest["warnings"]) and "Han letters" in report
    srt = (folder / "episode.srt").read_text()
    assert "{\\an8}" not in srt and "<i>" not in srt and "--> for data" not in srt


def folder_state(folder: Path) -> dict:
    """The episode in ``folder``, checked to be whole: its manifest, with every file it lists intact and nothing else."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = {path.name for path in folder.iterdir()}
    assert names == {*manifest["files"], "manifest.json", "report.md"}, names
    for name, entry in manifest["files"].items():
        assert sha256_file(folder / name) == entry["sha256"], f"{name} is not the file the manifest describes"
    return manifest


@contextlib.contextmanager
def small_file_system(path: Path, size_mb: int) -> Iterator[bool]:
    """A tmpfs of ``size_mb`` at ``path`` (True), or nothing where this user may not mount (False)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_fails_in_one_line_and_keeps_the_earlier_episode(earlier, special, api_url, tmp_path):
    out, _, _ = earlier
    special_script = tmp_path / "special.md"
    special_script.write_text(SPECIAL)  # made already: only publishing runs
    earlier_folder = out / "earlier-episode"
    disk = tmp_path / "disk"
    with small_file_system(disk, sum(p.stat().st_size for p in earlier_folder.iterdir()) // 2**20 + 2) as mounted:
        subprocess.run(["cp", "-a", str(earlier_folder), str(disk)], check=True)
        if mounted:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            (disk / ".filler").write_bytes(b"\0" * max(0, free - 256 * 1024))  # a quarter MB left
        before = snapshot(disk)

        def cap_file_size():  # no tmpfs: every file the run writes is capped at a quarter MB instead (EFBIG)
            if not mounted:
                resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

        full = run_cli("run", str(special_script), "--out", str(disk), api_url=api_url, preexec=cap_file_size)
        line = error_line(full)
        assert full.returncode == 2 and f"{disk}/xian-ka" in line and ": out_dir: " in line, line
        assert ("no space left on the device" if mounted else "file too large") in line
        assert snapshot(disk) == before, "a full disk left something behind or touched the earlier episode"


def test_a_read_only_output_folder_fails_in_the_pre_flight(earlier, api_url, tmp_path):
    out, script, _ = earlier
    disk = tmp_path / "disk"
    with small_file_system(disk, 64) as mounted:
        if not mounted and os.geteuid() == 0:
            pytest.skip("root ignores folder permissions and may not mount a read-only file system here")
        subprocess.run(["cp", "-a", str(out / "earlier-episode"), str(disk)], check=True)
        before = snapshot(disk)
        if mounted:
            assert subprocess.run(["mount", "-o", "remount,ro", str(disk)]).returncode == 0
        else:
            disk.chmod(0o555)
        try:
            result = run_cli("run", str(script), "--out", str(disk), api_url=api_url)
        finally:
            if not mounted:
                disk.chmod(0o755)
        line = error_line(result)
        assert result.returncode == 2 and f"{disk}: out_dir: cannot be written" in line, line
        assert snapshot(disk) == before


KILL_POINTS = [  # (fault point, extra environment, the episode that must be there after the kill)
    ("publish:copied:episode.mp4", {}, "old"),
    ("publish:staged", {}, "old"),
    ("publish:aside", {"PODFORGE_NO_RENAME_EXCHANGE": "1"}, "aside"),
    ("publish:swapped", {}, "new"),
]


def test_kill_9_while_publishing_leaves_the_old_or_the_new_episode_never_a_mix(earlier, special, api_url):
    out, script, _ = earlier
    target = out / "earlier-episode"
    old = folder_state(target)
    script.write_text(EARLIER.replace("And it stays as it is.", "And now it has changed."))  # the same episode, edited
    for point, env, expected in KILL_POINTS:
        killed = run_cli("run", str(script), "--out", str(out), api_url=api_url, fault=point, extra_env=env)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        if expected == "aside":  # two renames: the earlier episode moved aside, the new one not yet in
            assert not target.exists() and folder_state(out / ".earlier-episode.previous")["script_sha256"] == old["script_sha256"]
            continue
        state = folder_state(target)
        assert (state == old) if expected == "old" else (state["script_sha256"] != old["script_sha256"]), point
    done = run_cli("run", str(script), "--out", str(out), api_url=api_url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert folder_state(target)["script_sha256"] != old["script_sha256"]
    assert [path.name for path in out.iterdir() if path.name.startswith(".")] == [], "a killed publish left something in the output folder"
