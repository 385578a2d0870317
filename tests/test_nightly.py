"""The nightly batch on a real Prefect API: good scripts published, a bad one reported with its step."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect import flow, task

from flows.nightly import SUMMARY_ARTIFACT_KEY, WHOLE_EPISODE, failed_step, nightly
from tasks.script import parse

PARSE_STEP = parse.name  # the step a malformed script fails in, as the code names it

FAST = """\
mix: {intro_s: 0.5, outro_s: 0.5}
video: {width: 320, height: 180, fps: 10}
"""


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a-first.md").write_text("---\ntitle: Nightly one\n---\nALEX: Good evening.\n", encoding="utf-8")
    (folder / "b-second.txt").write_text("---\ntitle: Nightly two\n---\nSAM: Good night.\n", encoding="utf-8")
    (folder / "c-broken.md").write_text("---\ntitle: [unclosed\n---\nALEX: Never spoken.\n", encoding="utf-8")
    (folder / "notes.json").write_text("{}", encoding="utf-8")  # not a script: ignored
    return folder


def read_summary() -> str:
    """The markdown of the latest nightly summary artifact."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        (latest,) = [a for a in client.read_latest_artifacts() if a.key == SUMMARY_ARTIFACT_KEY]
    return latest.data


def assert_subflows_of_one_parent(flow_run_ids: list[str]) -> None:
    """Each episode ran as a child of the nightly run (a subflow), not as a detached top-level run."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(run_id) for run_id in flow_run_ids]
        parents = {client.read_task_run(run.parent_task_run_id).flow_run_id for run in runs}
    assert len(runs) == 3 and len(parents) == 1


def test_nightly_publishes_good_scripts_and_reports_the_bad_one(prefect_api, inbox: Path, tmp_path: Path):
    out_dir = tmp_path / "output"
    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST, encoding="utf-8")

    rows = nightly(inbox=str(inbox), out_dir=str(out_dir), max_concurrent=2, config=[str(fast)])

    by_script = {row.script: row for row in rows}
    assert set(by_script) == {"a-first.md", "b-second.txt", "c-broken.md"}
    assert by_script["a-first.md"].status == by_script["b-second.txt"].status == "published"
    for row in (by_script["a-first.md"], by_script["b-second.txt"]):
        assert (out_dir / row.slug / "episode.mp3").stat().st_size > 0
        assert (out_dir / row.slug / "manifest.json").is_file()
    assert_subflows_of_one_parent([row.flow_run_id for row in rows if row.flow_run_id])
    broken = by_script["c-broken.md"]
    assert broken.status == "failed"
    assert broken.failed_step == PARSE_STEP
    assert "c-broken.md" in broken.error and "front matter" in broken.error
    assert broken.flow_run_url.endswith(f"/runs/flow-run/{broken.flow_run_id}")

    summary = read_summary()
    table = [[cell.strip() for cell in line.strip("|").split("|")][:4] for line in summary.splitlines() if line.startswith("| ")][1:]
    assert [(script, status, failed) for script, status, _slug, failed in table] == [
        ("a-first.md", "published", ""),
        ("b-second.txt", "published", ""),
        ("c-broken.md", "failed", PARSE_STEP.replace("_", "\\_")),
    ]
    assert f"]({broken.flow_run_url})" in summary, "the failed script links to its episode run in the UI"

    # the next night: published scripts are skipped by content hash, the broken one is tried again
    again = {row.script: row for row in nightly(inbox=str(inbox), out_dir=str(out_dir), config=[str(fast)])}
    assert again["a-first.md"].status == again["b-second.txt"].status == "skipped"
    assert again["a-first.md"].slug == "nightly-one"
    assert again["c-broken.md"].status == "failed"


@task(name="explodes-in-a-thread", retries=1, retry_delay_seconds=0)
def explodes(line: str) -> str:
    raise ValueError(f"cannot speak {line!r}")


@flow
def two_steps(fail_before_any_step: bool = False) -> list[str]:
    if fail_before_any_step:
        raise ValueError("bad config")
    return [future.result() for future in explodes.map(["a", "b"])]


@pytest.mark.parametrize(("before_any_step", "step"), [(False, explodes.name), (True, WHOLE_EPISODE)])
def test_the_failed_step_is_read_from_the_error_not_from_recorded_states(prefect_api, before_any_step: bool, step: str):
    """A mapped task that fails in a worker thread (after a retry) is named from its error's traceback."""
    state = two_steps(fail_before_any_step=before_any_step, return_state=True)
    with pytest.raises(ValueError) as raised:
        state.result()
    assert failed_step(raised.value.__traceback__) == step
