"""The nightly batch: every new script in the inbox becomes an episode, a few at a time.

Scripts already published (a ``manifest.json`` in the output folder records the same script hash) are
skipped. Each new script runs as an ``episode`` subflow; a failing episode does not stop the others. The
run ends with a markdown artifact: one row per script, naming the step that failed and why, with a link
to the script's episode run in the UI.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Literal

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from prefect.utilities.urls import url_for
from pydantic import BaseModel

from flows.episode import episode
from podforge.errors import PodforgeError
from podforge.script import read_script_file

SCRIPT_SUFFIXES = (".md", ".txt")
SUMMARY_ARTIFACT_KEY = "nightly-summary"
WHOLE_EPISODE = "episode"  # the failed step when the failure was outside every step (e.g. a bad config file)


class BatchRow(BaseModel):
    """What happened to one script of the batch."""

    script: str
    status: Literal["published", "skipped", "failed"]
    slug: str = ""
    failed_step: str = ""
    error: str = ""
    flow_run_id: str = ""
    flow_run_url: str = ""


@flow(name="nightly", log_prints=True)
def nightly(inbox: str = "inbox", out_dir: str = "output", max_concurrent: int = 2, config: list[str] | None = None) -> list[BatchRow]:
    """Produce an episode from every script in ``inbox`` not yet published in ``out_dir``.

    Args:
        inbox: Folder of episode scripts (`*.md`, `*.txt`) on the machine that runs the flow; a relative
            path starts at the Podforge checkout. Scripts whose text was already published are skipped.
        out_dir: Output folder, as for an episode: each episode goes to `out_dir/<slug>/`.
        max_concurrent: How many episodes of this batch are produced at the same time.
        config: Extra YAML config files for every episode of the batch, merged over
            `configs/default.yaml` in this order.
    """
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
    counts = ", ".join(f"{sum(r.status == s for r in ordered)} {s}" for s in ("published", "skipped", "failed"))
    create_markdown_artifact(key=SUMMARY_ARTIFACT_KEY, markdown=summary_markdown(ordered, inbox), description=f"Nightly batch over {inbox}: {counts}")
    for row in ordered:
        if row.status == "failed":
            logger.error("%s failed in step %s: %s (%s)", row.script, row.failed_step, row.error, row.flow_run_url or row.flow_run_id)
    return ordered


def produce(script: Path, out_dir: str, config: list[str] | None) -> BatchRow:
    """Run one episode subflow; turn its outcome into a summary row (never raises)."""
    state: State = episode(script=str(script.resolve()), config=config, out_dir=out_dir, return_state=True)
    run_id = str(state.state_details.flow_run_id or "")
    run = {"flow_run_id": run_id, "flow_run_url": (url_for("flow-run", obj_id=run_id) or "") if run_id else ""}
    if state.is_completed():
        return BatchRow(script=script.name, status="published", slug=state.result().slug, **run)
    try:
        state.result()
    except Exception as exc:  # the episode's own failure, re-raised by Prefect
        error = exc.one_line() if isinstance(exc, PodforgeError) else f"{type(exc).__name__}: {exc}"
        return BatchRow(script=script.name, status="failed", failed_step=failed_step(exc.__traceback__), error=error, **run)
    return BatchRow(script=script.name, status="failed", failed_step=WHOLE_EPISODE, error=state.message or state.type.value, **run)


def failed_step(traceback: TracebackType | None) -> str:
    """The step (Prefect task) in which an error was raised, read from the error's own traceback.

    The innermost frame that runs a task's function names the step. This needs no API round trip, so the
    answer never depends on how far the server has got with recording task-run states.
    """
    step = WHOLE_EPISODE
    while traceback is not None:
        frame = traceback.tb_frame
        candidate = frame.f_globals.get(frame.f_code.co_name)  # ``@task`` leaves the Task under the function's name
        if isinstance(candidate, Task) and frame.f_code in (getattr(candidate.fn, "__code__", None), getattr(inspect.unwrap(candidate.fn), "__code__", None)):
            step = candidate.name
        traceback = traceback.tb_next
    return step


def summary_markdown(rows: list[BatchRow], inbox: str) -> str:
    """The summary table: one row per script, with a link to its episode run in the UI."""
    lines = [f"# Nightly batch over {markdown_cell(inbox)}", "", "| script | status | slug | failed step | error | episode run |", "|---|---|---|---|---|---|"]
    for row in rows:
        run = f"[{row.flow_run_id[:8]}]({row.flow_run_url})" if row.flow_run_url else row.flow_run_id[:8]
        cells = (row.script, row.status, row.slug, row.failed_step, row.error)
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + f" | {run} |")
    return "\n".join(lines) + "\n"


def markdown_cell(text: str) -> str:
    """Text that stays inside one table cell and renders as written (no markup, no HTML)."""
    escaped = "".join("\\" + char if char in "\\`*_[]<>|#~" else char for char in text)
    return " ".join(escaped.split())


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
