"""The default notification for failed runs: a line in a log file, as a Prefect notification block.

``podforge serve`` creates an automation (flow run failed → send a notification) whose block is a
:class:`FailureLog` by default. Prefect's server sends automation notifications itself, so this class must
be importable there: every server Podforge starts imports this module (:func:`podforge.prefect_server.create_app`).
To be told on Slack, Teams, e-mail… instead, create that notification block in the UI and pick it in the
automation (or pass ``podforge serve --notify <block-type>/<block-name>``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prefect.blocks.abstract import NotificationBlock
from pydantic import Field


class FailureLog(NotificationBlock):
    """Appends each notification to a file as one JSON line (time, subject, body) and logs it."""

    _block_type_name = "Podforge failure log"
    _block_type_slug = "podforge-failure-log"

    path: str = Field(description="the log file (JSON lines); its folder is created when needed")

    async def notify(self, body: str, subject: str | None = None) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "subject": subject or "", "body": body}
        log = Path(self.path)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:  # one short append per line: lines never interleave
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.logger.warning("%s: %s", subject or "notification", body)
