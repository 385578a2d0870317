"""Retrying a failed episode with `prefect flow-run retry`: the user's path after fixing a failed step.

The episode fails at its last step (the show's feed state is damaged), the user fixes the cause and
retries the same flow run from the CLI; every finished step is then reused from the cache (Prefect shows
its task run as "Cached") and only the failed step runs again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect import Task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_API_URL

import flows.episode as episode_module

REPO = Path(__file__).resolve().parent.parent
FAST = "mix: {intro_s: 0.5, outro_s: 0.5}\nvideo: {width: 320, height: 180, fps: 10}\n"
SCRIPT = "---\ntitle: Retry me\n---\nALEX: This line is spoken once.\nSAM: And so is this one.\n"


def step_name(task_run: TaskRun) -> str:
    """The name of the episode task behind a task run (run names may be custom, e.g. "speak-ALEX")."""
    names_by_key = {task.task_key: task.name for task in vars(episode_module).values() if isinstance(task, Task)}
    return names_by_key.get(task_run.task_key, task_run.name)


def task_run_states(flow_run_id) -> list[tuple[str, str]]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    runs.sort(key=lambda run: run.created)
    return [(step_name(run), run.state_name) for run in runs]


def test_retrying_a_failed_run_reuses_its_finished_steps(prefect_api, tmp_path: Path):
    from flows.episode import episode

    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST, encoding="utf-8")
    out_dir = tmp_path / "published"
    feed_state = out_dir / "podforge" / "feed-items.json"  # the show's feed state, damaged: publishing fails, after every other step
    feed_state.parent.mkdir(parents=True)
    feed_state.write_text("{not json", encoding="utf-8")

    state = episode(script_text=SCRIPT, config=[str(fast)], out_dir=str(out_dir), return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    first_attempt = task_run_states(flow_run_id)
    assert ("publish", "Failed") in first_attempt
    finished = sorted(name for name, state_name in first_attempt if state_name in ("Completed", "Cached") and name not in ("parse", "plan"))
    assert {"music", "speech", "mix", "video", "audio", "mux"} <= set(finished)

    feed_state.unlink()  # the fix
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    retry = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "retry", str(flow_run_id), "--entrypoint", "flows/episode.py:episode"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]

    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).state.is_completed()
    second_attempt = task_run_states(flow_run_id)[len(first_attempt) :]
    cached = [name for name, state_name in second_attempt if state_name == "Cached"]
    ran_again = [name for name, state_name in second_attempt if state_name == "Completed"]
    assert sorted(cached) == finished
    assert set(ran_again) <= {"parse", "plan", "publish"}, "only the uncached steps run again"
    assert (out_dir / "retry-me" / "episode.mp4").stat().st_size > 0
    manifest = json.loads((out_dir / "retry-me" / "manifest.json").read_text())
    reused = {step["step"] for step in manifest["steps"] if step["cached"]}
    assert {"music", "speech", "mix", "video", "audio", "mux"} <= reused, "the manifest knows the retry reused these"
    assert not next(step for step in manifest["steps"] if step["step"] == "publish")["cached"]
