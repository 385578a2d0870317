"""The progress board: it reports each step as it finishes and hands on futures that keep the DAG's edges."""

from __future__ import annotations

from prefect import flow, task
from prefect.client.orchestration import get_client
from pydantic import BaseModel

from podforge.progress import ProgressBoard, add_listener
from podforge.steps import StepOutput, current_step, step_task


class Made(BaseModel):
    value: int


@step_task("made", key=("value",), cached=False)
def made(value: int) -> StepOutput:
    return StepOutput(record=current_step().record("test"), result=Made(value=value))


@task
def gathered(outputs: list[StepOutput]) -> list[int]:
    return [output.result.value for output in outputs]


@flow
def followed() -> tuple[list[int], list[str], str]:
    futures = [made.submit(value=value) for value in (3, 4)]
    done = ProgressBoard("progress-test").follow(futures)
    consumer = gathered.submit(outputs=done)
    return consumer.result(), [str(future.task_run_id) for future in futures], str(consumer.task_run_id)


def test_followed_steps_are_reported_and_the_next_task_gets_their_results_and_edges(prefect_api):
    seen: list[tuple[str, int, int]] = []
    remove = add_listener(lambda step, done, total: seen.append((step, done, total)))
    try:
        values, upstream, consumer = followed()
    finally:
        remove()
    assert values == [3, 4]
    assert [(done, total) for _, done, total in seen] == [(1, 2), (2, 2)] and {step for step, _, _ in seen} == {"made"}
    with get_client(sync_client=True) as client:
        inputs = client.read_task_run(consumer).task_inputs["outputs"]
    assert sorted(str(link.id) for link in inputs) == sorted(upstream)  # the UI draws the consumer after both steps
