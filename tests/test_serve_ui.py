"""``podforge serve`` end to end: a real browser starts an episode from the Prefect UI.

Debian's ``chromium`` is driven by Playwright (which cannot download its own browsers here). The server,
the deployments and the worker are the ones ``podforge serve`` brings up; the episode runs in a flow-run
process started by that worker, and its files must appear in the chosen output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
REPO = Path(__file__).resolve().parent.parent
SERVE_STARTUP_TIMEOUT_S = 300
EPISODE_TIMEOUT_S = 300
UI_SCRIPT = "---\ntitle: Made in the browser\nslug: made-in-the-browser\n---\nALEX: Hello from the Prefect UI.\nSAM: Hi, Alex."

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    port: int
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    home = tmp_path_factory.mktemp("serve-home")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PODFORGE_HOME=str(home), PREFECT_HOME=str(home / "prefect"))
    process = subprocess.Popen(
        [sys.executable, "-m", "podforge.serve", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    handle = Served(process=process, url=f"http://127.0.0.1:{port}", port=port)
    ready = threading.Event()

    def follow_output() -> None:
        for line in process.stdout:
            handle.output.append(line.rstrip())
            if "Prefect UI:" in line:
                ready.set()

    handle.reader = threading.Thread(target=follow_output, daemon=True)
    handle.reader.start()
    started = time.monotonic()
    while not ready.wait(1) and process.poll() is None and time.monotonic() - started < SERVE_STARTUP_TIMEOUT_S:
        pass
    if not ready.is_set():
        process.kill()
        pytest.fail("podforge serve did not come up:\n" + "\n".join(handle.output[-20:]))
    print(f"podforge serve ready in {time.monotonic() - started:.0f} s")
    yield handle
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_custom_run_from_the_ui_publishes_an_episode(served: Served, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    out_dir = tmp_path / "ui-output"
    run_name = f"ui-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{served.url}/deployments")
            page.get_by_role("link", name="episode", exact=True).first.click()
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()

            def parameter(name: str):
                label = page.locator(".schema-form-property__label", has_text=name)
                return page.locator(".schema-form-property").filter(has=label)

            page.locator(".p-label").filter(has_text="Run Name").locator("input").fill(run_name)
            parameter("script_text").locator("textarea").fill(UI_SCRIPT)
            parameter("out_dir").locator("textarea").fill(str(out_dir))
            page.get_by_role("button", name="Submit").click()

            page.get_by_role("link", name=run_name).first.click(timeout=60_000)
            heading = page.locator(".page-heading").first
            expect(heading).to_contain_text(run_name)
            expect(heading.locator(".state-badge")).to_have_text("Completed", timeout=EPISODE_TIMEOUT_S * 1000)
        except Exception:
            page.screenshot(path=str(tmp_path / "ui-failure.png"), full_page=True)
            print("screenshot:", tmp_path / "ui-failure.png", "\nserve output:\n" + "\n".join(served.output[-20:]))
            raise
        finally:
            browser.close()
    print(f"UI run {run_name} completed in {time.monotonic() - started:.0f} s")

    episode = out_dir / "made-in-the-browser"
    for name in ("episode.mp3", "episode.mp4", "episode.wav", "episode.srt", "episode.vtt"):
        assert (episode / name).stat().st_size > 0, name
    manifest = json.loads((episode / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["script_sha256"] == hashlib.sha256(UI_SCRIPT.encode("utf-8")).hexdigest(), "the episode was made from the text typed in the form"
    assert manifest["flow_run_id"], "the episode ran as a flow run of the served deployment"


def test_ctrl_c_stops_everything_serve_started(served: Served):
    serve = psutil.Process(served.process.pid)
    started = serve.children(recursive=True)
    commands = [" ".join(child.cmdline()) for child in started]
    assert any("server start" in command for command in commands) and any("worker start" in command for command in commands), commands

    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=90) == 0
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [process.pid for process in alive]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", served.port)) != 0, "the server's port is closed"
    served.reader.join(timeout=10)
    assert served.output[-1] == "podforge serve: stopping"
