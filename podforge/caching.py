"""Content-addressed cache keys for Prefect tasks.

Prefect's default cache policy includes the flow run id, and hashing path strings misses a file whose
content changed. :class:`ContentKey` hashes what a step's output depends on: the step name, the content
of every input file, the engine (name, implementation, version, settings) and the parameters. Run ids and
output locations never enter the key, so a new flow run, from the CLI or the UI, reuses finished steps.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

from podforge.config import podforge_home
from podforge.io import sha256_file

KEY_SCHEMA = "podforge-cache-v1"
"""Bump to invalidate every cached step at once."""

_file_hashes: dict[tuple[str, int, int], str] = {}
_file_hashes_lock = threading.Lock()


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's content, memoised on (path, size, mtime) so large inputs hash once."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _file_hashes_lock:
        cached = _file_hashes.get(memo_key)
    if cached is None:
        cached = sha256_file(path)
        with _file_hashes_lock:
            _file_hashes[memo_key] = cached
    return cached


def canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` in which files are replaced by their content hashes."""
    if hasattr(value, "__cache_content__"):
        return canonical(value.__cache_content__())
    if isinstance(value, BaseModel):
        return canonical(dict(value))
    if isinstance(value, Path):
        if value.is_file():
            return {"sha256": file_fingerprint(value)}
        if value.is_dir():
            return {"dir": sorted((str(p.relative_to(value)), canonical(p)) for p in value.rglob("*") if p.is_file())}
        return {"missing": value.name}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [canonical(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot build a cache key from {type(value).__name__}")


def content_key(step: str, inputs: dict[str, Any]) -> str:
    payload = json.dumps([KEY_SCHEMA, step, canonical(inputs)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class ContentKey(CachePolicy):
    """Prefect cache policy: the step's name and version plus the content of its inputs (module docstring).

    A task's ``version`` is bumped when its code starts producing different output for the same inputs.
    """

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        task = task_ctx.task
        return content_key(f"{task.name}@{task.version or ''}", inputs)


CONTENT = ContentKey()


def results_dir() -> Path:
    """Where Prefect persists task results (and cache records) between runs."""
    return podforge_home() / "results"


def artifacts_dir() -> Path:
    """Where steps write their files, one folder per step and cache key."""
    return podforge_home() / "artifacts"


def step_workdir(step: str, key: str) -> Path:
    workdir = artifacts_dir() / step / key[:24]
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir

