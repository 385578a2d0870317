"""Progress that users see: a Prefect progress artifact (UI) and local listeners (the CLI's rich bar)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed

Listener = Callable[[str, int, int], None]
"""Called with (step just finished, steps done, steps in all)."""

_listeners: list[Listener] = []


def add_listener(listener: Listener) -> Callable[[], None]:
    """Register ``listener``; returns a function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


class ProgressBoard:
    """Follows an episode's step futures and reports each one as it finishes."""

    def __init__(self, slug: str):
        self._artifact_id = create_progress_artifact(progress=0.0, key=f"{slug}-progress"[:60], description=f"Episode {slug}: steps done")

    def follow(self, futures: Sequence[PrefectFuture]) -> list[PrefectFuture]:
        """Wait for the step ``futures``, reporting each one as it finishes; returns them, all done, in order.

        The first step to fail raises its exception here, failing the flow with it. Hand the futures on to
        the next task rather than their results: Prefect then links the task to them without walking
        through every result (timelines, word timings) to find where it came from.
        """
        for done, future in enumerate(as_completed(list(futures)), start=1):
            step = future.result().record.step
            update_progress_artifact(artifact_id=self._artifact_id, progress=round(100 * done / len(futures), 1))
            for listener in list(_listeners):
                listener(step, done, len(futures))
        return list(futures)
