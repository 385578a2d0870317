"""The Prefect servers Podforge starts: one start-up at a time on a home, and none outlives its starter.

Real servers, real ``podforge run`` processes, a real SIGKILL. Every wait polls a state (a log line, a
health answer, a process gone) with a generous deadline; nothing depends on how fast the machine is.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from podforge.prefect_server import server_command, server_environment, startup_lock, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent
FAST = "mix: {intro_s: 0.5, outro_s: 0.5}\nvideo: {width: 320, height: 180, fps: 10}\n"
DEADLINE_S = 300


def wait_for(condition, what: str, timeout_s: float = DEADLINE_S, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def has_table(database: Path, table: str) -> bool:
    if not database.is_file():
        return False
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone() is not None


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie counts: whoever adopted the orphan may reap it late)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PODFORGE_HOME=str(home), DO_NOT_TRACK="1")
    return env


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One empty Podforge home for the module: the first test finds it empty, the next reuse its database."""
    return tmp_path_factory.mktemp("first-run-home")


def test_a_server_starting_on_a_home_waits_while_another_holds_the_startup_lock(tmp_path: Path, monkeypatch):
    prefect_home = tmp_path / "prefect"
    monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
    database = prefect_home / "prefect.db"
    log = tmp_path / "server.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with startup_lock(prefect_home):  # as if another server were migrating this database right now
        with open(log, "wb") as output:
            server = subprocess.Popen(server_command("127.0.0.1", port), env=server_environment(ephemeral=True), stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "waiting for another Prefect server" in log.read_text(errors="replace") or server.poll() is not None, "the server to reach the lock")
            assert server.poll() is None, log.read_text(errors="replace")
            assert not has_table(database, "alembic_version"), "no migration ran while the lock was held"
        except BaseException:
            server.kill()
            raise
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/api", server, log, timeout_s=DEADLINE_S)
        assert has_table(database, "alembic_version") and has_table(database, "flow_run"), "the server migrated once it had the lock"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_two_first_runs_on_an_empty_home_both_publish_without_a_traceback(home: Path, tmp_path: Path):
    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST, encoding="utf-8")
    runs = []
    for name in ("one", "two"):
        script = tmp_path / f"{name}.md"
        script.write_text(f"---\ntitle: First run {name}\n---\nALEX: Run {name} on an empty home.\n", encoding="utf-8")
        command = [sys.executable, "-m", "podforge", "run", str(script), "--out", str(tmp_path / "out"), "-c", str(fast)]
        runs.append(subprocess.Popen(command, cwd=REPO, env=run_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
        assert "Traceback" not in output and "duplicate column" not in output, output[-3000:]
    for name in ("one", "two"):
        assert (tmp_path / "out" / f"first-run-{name}" / "manifest.json").is_file()
    server_log = (home / "logs" / "temporary-server.log").read_text(errors="replace")
    assert "Traceback" not in server_log and "Application startup failed" not in server_log, server_log[-3000:]


def podforge_server_child(parent: psutil.Process) -> psutil.Process | None:
    for child in parent.children(recursive=True):
        try:
            if "podforge.prefect_server:create_app" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_run_killed_with_sigkill_takes_its_temporary_server_with_it(home: Path, tmp_path: Path):
    script = tmp_path / "killed.md"
    script.write_text("---\ntitle: Killed run\n---\nALEX: This run is killed while it starts.\n", encoding="utf-8")
    command = [sys.executable, "-m", "podforge", "run", str(script), "--out", str(tmp_path / "out")]
    run = subprocess.Popen(command, cwd=REPO, env=run_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        server = wait_for(lambda: podforge_server_child(psutil.Process(run.pid)), "the run to start its temporary server")
        port = int(server.cmdline()[server.cmdline().index("--port") + 1])

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as response:
                    return response.status == 200
            except OSError:
                return run.poll() is not None  # the run ended early: the assertions below say why

        wait_for(healthy, "the temporary server to answer")
        assert run.poll() is None, "the run was still going when it was killed"
    except BaseException:
        run.kill()
        raise

    run.send_signal(signal.SIGKILL)  # what the OOM killer does: no atexit, no finally
    run.wait(timeout=30)
    wait_for(lambda: gone(server), f"the server (pid {server.pid}) to stop after the run that started it was killed", timeout_s=120)
    assert not port_is_open(port), f"nothing listens on {port} any more"


def test_the_lifeline_stops_a_command_when_its_parent_is_killed(tmp_path: Path):
    """The mechanism alone: a parent SIGKILLed while its lifeline child sleeps takes the child with it."""
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        "from podforge.lifeline import lifeline_command\n"
        "child = subprocess.Popen(lifeline_command(['sleep', '600']))\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=REPO)
    try:
        wait_for(lambda: pid_file.is_file() and pid_file.read_text(), "the parent to start its child", timeout_s=120)
        child = psutil.Process(int(pid_file.read_text()))
        wait_for(lambda: child.cmdline()[:1] == ["sleep"], "the lifeline to execute the command", timeout_s=120)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    wait_for(lambda: gone(child), "the child to die with its parent", timeout_s=60)


EARLY = """
import json, os, urllib.request
from prefect.settings import get_current_settings
from podforge.prefect_server import configured_api_url, launch_early, prefect_api
early = launch_early()
if early is None:
    heartbeat = None
    if configured_api_url():
        with prefect_api(None):
            heartbeat = get_current_settings().flows.heartbeat_frequency
    print(json.dumps({"heartbeat": heartbeat} if heartbeat else None))
else:
    pid = early.process.pid
    with prefect_api(early) as api_url:
        heartbeat = get_current_settings().flows.heartbeat_frequency
        with urllib.request.urlopen(api_url + "/health", timeout=30) as response:
            print(json.dumps({"launched": early.api_url, "used": api_url, "status": response.status, "pid": pid, "heartbeat": heartbeat}))
"""


def test_podforge_run_starts_its_server_early_only_where_the_database_exists(tmp_path: Path):
    """The temporary server boots while the CLI imports and checks (launch_early), only on an existing
    database (a run refused at once must not interrupt a first migration) and never with an API configured;
    flow-run heartbeats go only to a configured API.
    Each case runs in a fresh process, as ``podforge run`` does (no Prefect settings inherited)."""
    import json

    home = tmp_path / "prefect-home"
    home.mkdir()
    env = run_env(tmp_path / "podforge-home")
    env.update(PREFECT_HOME=str(home), PREFECT_PROFILES_PATH=str(tmp_path / "profiles.toml"))

    def early() -> dict | None:
        done = subprocess.run([sys.executable, "-c", EARLY], cwd=REPO, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert early() is None  # no database yet
    (home / "prefect.db").touch()  # an empty SQLite file: the server migrates it
    (tmp_path / "profiles.toml").write_text('active = "remote"\n[profiles.remote]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n')
    assert early() == {"heartbeat": 180}  # a configured API is used instead, and watches the run's heartbeats
    (tmp_path / "profiles.toml").write_text('active = "local"\n[profiles.local]\n')
    started = early()
    assert started is not None and started["used"] == started["launched"] and started["status"] == 200
    assert started["heartbeat"] is None  # nobody outlives a temporary server to watch for a crashed run's missing heartbeats
    assert not psutil.pid_exists(started["pid"]) or gone(psutil.Process(started["pid"]))  # stopped with its block
    assert has_table(home / "prefect.db", "flow_run")
    with sqlite3.connect(home / "prefect.db") as db:  # a run's own server skips block registration (and importing collections)
        assert db.execute("select count(*) from block_type").fetchone() == (0,)


def test_the_cli_imports_nothing_heavy_before_it_launches_the_server():
    """``podforge run`` launches Prefect's temporary server as soon as ``podforge.cli`` is imported, so that
    import must not pull in Prefect, numpy, PyAV, OpenCV or the engines: each command imports what it runs."""
    import json

    heavy = ("prefect", "numpy", "av", "cv2", "podforge.engines", "podforge.doctor", "podforge.media")
    code = f"import sys, json, podforge.cli; print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


def test_the_cli_leaves_its_objects_out_of_the_final_garbage_collection():
    """After an episode the interpreter's final collection would walk every object Prefect and pydantic
    made (0.2-0.5 s) for memory the OS takes back anyway: ``main`` freezes them as it returns, whatever
    the command's outcome, and the exit handlers (which stop servers and engine workers) still run."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count()))\n"
        "from podforge.cli import main\n"
        "sys.argv = ['podforge', *sys.argv[1:]]\n"
        "main()\n"
    )
    for args, code_expected in ((["--help"], 0), (["run", "no-such-script.md"], 2)):
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S)
        assert done.returncode == code_expected, done.stderr[-2000:]
        frozen = int(done.stdout.rsplit("frozen at exit:", 1)[1])
        assert frozen > 10_000, done.stdout[-500:]
