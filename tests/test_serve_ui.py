"""``podforge serve`` end to end, driven as a user drives it: a real browser on the Prefect UI.

Debian's ``chromium`` is driven by Playwright (which cannot download its own browsers here). The server,
deployments, worker, failure automation and file server are the ones ``podforge serve`` brings up; runs
execute in flow-run processes started by that worker. The tests run in file order on one served
instance (the work pool runs one flow run at a time on a small machine); the last one stops it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid
from pathlib import Path

import psutil
import pytest
from prefect.utilities.callables import parameter_schema
from serving import OWNER_EMAIL, Served, create_run, flow_run, port_is_open, prefect_client, start_serve, stuck_encoder, task_run_states, wait_for, wait_until_final

from flows.episode import episode
from flows.nightly import nightly
from podforge.serve import DEFAULT_POOL, default_concurrency

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
EPISODE_TIMEOUT_S = 600
UI_SCRIPT = "---\ntitle: Made in the browser\nslug: made-in-the-browser\n---\nALEX: Hello from the Prefect UI.\nSAM: Hi, Alex."

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    served = start_serve(tmp_path_factory.mktemp("serve-home"))
    yield served
    served.stop()


@pytest.fixture
def browser_page(tmp_path: Path, served: Served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            yield page
        except Exception:
            page.screenshot(path=str(tmp_path / "ui-failure.png"), full_page=True)
            print("screenshot:", tmp_path / "ui-failure.png", "\nserve output:\n" + "\n".join(served.output[-20:]))
            raise
        finally:
            browser.close()


def open_custom_run_form(page, served: Served, deployment: str) -> None:
    page.goto(f"{served.url}/deployments")
    page.get_by_role("link", name=deployment, exact=True).first.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()


def form_property(page, name: str):
    label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{re.escape(name)}( \(Optional\))?$"))
    return page.locator(".schema-form-property").filter(has=label)


def as_rendered(markdown: str) -> str:
    """A description as the form shows it: markdown code spans become plain text, lines are joined."""
    return " ".join(markdown.replace("`", "").split())


@pytest.mark.parametrize("flow", [episode, nightly], ids=["episode", "nightly"])
def test_the_run_form_describes_every_parameter_without_machine_paths(served: Served, browser_page, flow):
    from playwright.sync_api import expect

    page = browser_page
    open_custom_run_form(page, served, flow.name)
    schema = parameter_schema(flow).model_dump_for_openapi()["properties"]
    for name, spec in schema.items():
        assert spec.get("description"), f"{flow.name}.{name} has a description in the code"
        description = form_property(page, name).locator(".schema-form-property__description")
        expect(description).to_have_text(as_rendered(spec["description"]), timeout=60_000)  # whitespace-normalised
    values = page.locator(".schema-form-property textarea, .schema-form-property input").evaluate_all("fields => fields.map(f => f.value)")
    assert values and not any(str(Path(__file__).resolve().parent.parent) in value for value in values), values


def test_a_custom_run_from_the_ui_publishes_an_episode_whose_report_links_work(served: Served, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    run_name = f"ui-test-{uuid.uuid4().hex[:8]}"
    open_custom_run_form(page, served, "episode")
    page.locator(".p-label").filter(has_text="Run Name").locator("input").fill(run_name)
    form_property(page, "script_text").locator("textarea").fill(UI_SCRIPT)
    page.get_by_role("button", name="Submit").click()  # out_dir and config: serve's defaults (--out, --config)
    page.get_by_role("link", name=run_name).first.click(timeout=60_000)
    heading = page.locator(".page-heading").first
    expect(heading).to_contain_text(run_name)
    expect(heading.locator(".state-badge")).to_have_text("Completed", timeout=EPISODE_TIMEOUT_S * 1000)

    episode_dir = served.out / "made-in-the-browser"
    manifest = json.loads((episode_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["script_sha256"] == hashlib.sha256(UI_SCRIPT.encode("utf-8")).hexdigest(), "made from the text typed in the form"
    assert manifest["flow_run_id"], "the episode ran as a flow run of the served deployment"
    assert f"<itunes:email>{OWNER_EMAIL}</itunes:email>" in Path(manifest["feed"]).read_text(encoding="utf-8"), "the feed's owner comes from the config"

    # the episode report, as the UI shows it, links each file at publish.base_url, where serve serves it
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("made-in-the-browser-report", exact=True).last.click()
    link = page.get_by_role("link", name="episode.mp3", exact=True)
    href = link.get_attribute("href", timeout=60_000)
    assert href == f"http://127.0.0.1:{served.files_port}/made-in-the-browser/episode.mp3"
    responses = []
    page.context.on("response", lambda response: responses.append((response.url, response.status, response.request.headers.get("range"))))
    with page.context.expect_page() as opened:  # the UI opens report links in a new tab
        link.click()
    opened.value.wait_for_load_state()
    wait_for(lambda: any(url == href and status == 206 for url, status, _ in responses), "the browser's media player to fetch a byte range", timeout_s=120)
    assert all(status in (200, 206) for url, status, _ in responses if url == href), responses
    fetched = page.context.request.get(href)
    assert fetched.status == 200 and hashlib.sha256(fetched.body()).hexdigest() == manifest["files"]["episode.mp3"]["sha256"]


def test_a_failed_run_is_reported_by_the_failure_automation(served: Served):
    with prefect_client(served) as client:
        assert client.read_work_pool(DEFAULT_POOL).concurrency_limit == default_concurrency(), "the pool's default limit comes from the CPU count"
    run = create_run(served, "episode/episode", {"script_text": "---\ntitle: [unclosed\n---\nALEX: Never spoken.\n"})
    assert wait_until_final(served, run.id).state.is_failed()
    failures = served.home / "logs" / "failures.log"
    line = wait_for(lambda: failures.is_file() and next((line for line in failures.read_text().splitlines() if str(run.id) in line), None), "the failure notification")
    notification = json.loads(line)
    assert run.name in notification["subject"] and "Failed" in notification["subject"]
    assert f"{served.url}/runs/flow-run/{run.id}" in notification["body"], "the notification links the run in the UI"


def test_ctrl_c_mid_run_marks_the_run_and_its_steps_crashed_and_stops_everything(served: Served, tmp_path: Path):
    stuck, hold = stuck_encoder(tmp_path)
    run = create_run(served, "episode/episode", {"script_text": "---\ntitle: Stopped midway\n---\nALEX: I am cut off.\n", "config": [str(served.config), str(stuck)]})
    wait_for(lambda: flow_run(served, run.id).state.is_running() and "RUNNING" in task_run_states(served, run.id), "the run to be in the middle of a step")
    started = psutil.Process(served.process.pid).children(recursive=True)
    commands = [" ".join(child.cmdline()) for child in started]
    assert any("podforge.prefect_server:create_app" in command for command in commands) and any("worker start" in command for command in commands), commands

    assert served.stop() == 0
    hold.unlink()
    _, alive = psutil.wait_procs(started, timeout=60)
    assert not alive, [process.pid for process in alive]
    assert not port_is_open(served.port) and not port_is_open(served.files_port), "the API and the file server are closed"
    assert served.output[-1] == "podforge serve: stopping"

    with sqlite3.connect(served.home / "prefect" / "prefect.db") as database:  # the server is gone: read what it stored
        (state,) = database.execute("SELECT state_type FROM flow_run WHERE id = ?", (str(run.id),)).fetchone()
        steps = [row[0] for row in database.execute("SELECT state_type FROM task_run WHERE flow_run_id = ?", (str(run.id),))]
    assert state == "CRASHED", "the UI offers Retry for a crashed run"
    assert "CRASHED" in steps and not {"RUNNING", "PENDING"} & set(steps), steps
