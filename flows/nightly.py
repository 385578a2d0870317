"""The nightly batch: every new script in the inbox becomes an episode, a few at a time.

Scripts already published (a ``manifest.json`` in the output folder records the same script hash) are
skipped. Each new script runs as an ``episode`` subflow; a failing episode does not stop the others. The
run ends with a table artifact: one row per script, naming the step that failed and why.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType
from prefect.client.schemas.objects import StateType, TaskRun
from prefect.states import State
from pydantic import BaseModel

import flows.episode as episode_module
from flows.episode import episode
from podforge.errors import PodforgeError
from podforge.script import read_script_file

SCRIPT_SUFFIXES = (".md", ".txt")
SUMMARY_ARTIFACT_KEY = "nightly-summary"


class BatchRow(BaseModel):
    """What happened to one script of the batch."""

    script: str
    status: Literal["published", "skipped", "failed"]
    slug: str = ""
    failed_step: str = ""
    error: str = ""
    flow_run_id: str = ""


@flow(name="nightly", log_prints=True)
def nightly(inbox: str = "inbox", out_dir: str = "output", max_concurrent: int = 2, config: list[str] | None = None) -> list[BatchRow]:
    """Produce an episode from every script in ``inbox`` not yet published in ``out_dir``."""
    logger = get_run_logger()
    published = published_script_hashes(Path(out_dir))
    rows: dict[Path, BatchRow] = {}
    todo: list[Path] = []
    seen: dict[str, Path] = {}
    for script in find_scripts(Path(inbox)):
        digest = script_sha256(script)
        if digest in published:
            rows[script] = BatchRow(script=script.name, status="skipped", slug=published[digest], error="already published")
        elif digest in seen:
            rows[script] = BatchRow(script=script.name, status="skipped", error=f"same text as {seen[digest].name}")
        else:
            if digest:
                seen[digest] = script
            todo.append(script)

    logger.info("%d scripts in %s: %d to produce, %d skipped", len(rows) + len(todo), inbox, len(todo), len(rows))
    with ThreadPoolExecutor(max_workers=max(1, max_concurrent), thread_name_prefix="episode") as pool:
        # each thread runs the subflow inside a copy of this flow's context, so it is linked as a child run
        futures = {script: pool.submit(contextvars.copy_context().run, produce, script, out_dir, config) for script in todo}
        rows.update({script: future.result() for script, future in futures.items()})

    ordered = [rows[script] for script in sorted(rows)]
    create_table_artifact(
        key=SUMMARY_ARTIFACT_KEY,
        table=[row.model_dump(exclude={"flow_run_id"}) for row in ordered],
        description=f"Nightly batch over {inbox}: " + ", ".join(f"{sum(r.status == s for r in ordered)} {s}" for s in ("published", "skipped", "failed")),
    )
    for row in ordered:
        if row.status == "failed":
            logger.error("%s failed in step %s: %s", row.script, row.failed_step, row.error)
    return ordered


def produce(script: Path, out_dir: str, config: list[str] | None) -> BatchRow:
    """Run one episode subflow; turn its outcome into a summary row (never raises)."""
    state: State = episode(script=str(script.resolve()), config=config, out_dir=out_dir, return_state=True)
    run_id = str(state.state_details.flow_run_id or "")
    if state.is_completed():
        manifest = state.result()
        return BatchRow(script=script.name, status="published", slug=manifest.slug, flow_run_id=run_id)
    try:
        state.result()
        error = state.message or state.type.value
    except Exception as exc:  # the episode's own failure, re-raised by Prefect
        error = exc.one_line() if isinstance(exc, PodforgeError) else f"{type(exc).__name__}: {exc}"
    return BatchRow(script=script.name, status="failed", failed_step=failed_steps(run_id) or "episode", error=error, flow_run_id=run_id)


def failed_steps(flow_run_id: str) -> str:
    """The names of the steps (tasks) whose runs failed or crashed in one flow run, in start order."""
    if not flow_run_id:
        return ""
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))),
        )
    task_runs.sort(key=lambda run: run.start_time or run.expected_start_time or run.created)
    return ", ".join(dict.fromkeys(step_name(run) for run in task_runs))


def step_name(task_run: TaskRun) -> str:
    """The name of the episode task behind a task run (run names may be custom, e.g. "speak-ALEX")."""
    names_by_key = {task.task_key: task.name for task in vars(episode_module).values() if isinstance(task, Task)}
    return names_by_key.get(task_run.task_key, task_run.name)


def find_scripts(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        raise PodforgeError("inbox folder not found", file=inbox, field="inbox")
    return sorted(path for path in inbox.iterdir() if path.is_file() and path.suffix.lower() in SCRIPT_SUFFIXES)


def script_sha256(path: Path) -> str:
    """The hash that the episode manifest records for this script (empty when the file is unreadable)."""
    try:
        return hashlib.sha256(read_script_file(path).encode("utf-8")).hexdigest()
    except PodforgeError:
        return ""


def published_script_hashes(out_dir: Path) -> dict[str, str]:
    """script_sha256 → slug, from every episode manifest in ``out_dir``."""
    hashes: dict[str, str] = {}
    for manifest in sorted(out_dir.glob("*/manifest.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            hashes[data["script_sha256"]] = data["slug"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an episode manifest we can read: treat the script as unpublished
    return hashes
