"""Chapter marks: where each ``## Heading`` of the script starts and ends in the published audio.

The same marks become ID3 CHAP/CTOC frames in the MP3 (:mod:`podforge.publishing.id3`) and the
Podcasting 2.0 JSON chapters file that the feed links with ``podcast:chapters``.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from podforge.io import write_text_atomic

JSON_CHAPTERS_VERSION = "1.2.0"
JSON_CHAPTERS_MIME = "application/json+chapters"


class ChapterMark(BaseModel):
    """One chapter of the published audio, in seconds from its start."""

    title: str = Field(min_length=1, max_length=200)
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _ends_after_start(self) -> ChapterMark:
        if self.end_s <= self.start_s:
            raise ValueError(f"chapter {self.title!r} ends at {self.end_s} s, not after its start {self.start_s} s")
        return self


def marks_from_starts(starts: list[tuple[str, float]], duration_s: float) -> list[ChapterMark]:
    """Chapter marks from ``(title, start_s)`` pairs: each chapter ends where the next one starts.

    The first chapter is stretched back to 0 s so that the intro music belongs to it, and the last one
    runs to ``duration_s``. Pairs must be in playback order.
    """
    if not starts:
        return []
    boundaries = [0.0, *(start for _, start in starts[1:]), duration_s]
    if any(later <= earlier for earlier, later in pairwise(boundaries)):
        raise ValueError(f"chapter starts must increase and end before {duration_s} s; got {starts}")
    return [ChapterMark(title=title, start_s=boundaries[i], end_s=boundaries[i + 1]) for i, (title, _) in enumerate(starts)]


def chapters_json(chapters: list[ChapterMark], *, title: str | None = None, podcast_name: str | None = None) -> str:
    """The Podcasting 2.0 JSON chapters document (``{"version": "1.2.0", "chapters": [...]}``)."""
    document: dict = {"version": JSON_CHAPTERS_VERSION}
    if title:
        document["title"] = title
    if podcast_name:
        document["podcastName"] = podcast_name
    document["chapters"] = [{"startTime": round(mark.start_s, 3), "endTime": round(mark.end_s, 3), "title": mark.title} for mark in chapters]
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def write_chapters_json(path: Path, chapters: list[ChapterMark], *, title: str | None = None, podcast_name: str | None = None) -> Path:
    return write_text_atomic(path, chapters_json(chapters, title=title, podcast_name=podcast_name))
