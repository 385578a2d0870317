"""Content-addressed step keys, the work folders named by them, and cached results that are checked before use.

One key per step. A step declares the inputs that change its output; :func:`step_key` hashes the step's
name and version and the *content* of those inputs: files by their sha256, engines by implementation,
version, settings and model files, parameters by value. Paths, run ids, host names and telemetry settings
never enter it. The same key names the step's work folder (:func:`step_workdir`) and its Prefect cache
entry (:class:`StepKey`), so a new flow run, from the CLI or the UI, reuses a finished step.

Cached results are JSON (:class:`ResultSerializer`), never pickle: write access to the cache must not be
code execution. Each stored result lists the sha256 of every file it points to, taken when it was made;
before Prefect may reuse an entry, :func:`evict_if_broken` checks those files and deletes an entry whose
files are missing or changed, so the step runs again instead of failing forever or publishing a broken file.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefect.cache_policies import CachePolicy
from prefect.serializers import Serializer
from pydantic import BaseModel

from podforge.config import podforge_home
from podforge.io import sha256_file, write_text_atomic

KEY_SCHEMA = "podforge-cache-v2"
"""Bump to invalidate every cached step at once."""

RESULT_MODULES = ("podforge.", "tasks.")
"""Cached results may only be models defined in these packages."""

log = logging.getLogger("podforge.cache")
_file_hashes: dict[tuple[str, int, int], str] = {}
_file_hashes_lock = threading.Lock()


# --- content ----------------------------------------------------------------------------------------


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's content, memoised on (path, size, mtime): in memory, and on disk across runs.

    A multi-GB model file is hashed once per change, not once per process.
    """
    resolved = path.resolve()
    stat = resolved.stat()
    memo_key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _file_hashes_lock:
        cached = _file_hashes.get(memo_key)
    if cached is None:
        cached = _disk_memo(memo_key) or _remember(memo_key, sha256_file(resolved))
        with _file_hashes_lock:
            _file_hashes[memo_key] = cached
    return cached


def _memo_path(path: str) -> Path:
    return podforge_home() / "hashes" / f"{hashlib.sha1(path.encode()).hexdigest()}.json"


def _disk_memo(memo_key: tuple[str, int, int]) -> str | None:
    try:
        memo = json.loads(_memo_path(memo_key[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return memo.get("sha256") if [memo.get("size"), memo.get("mtime_ns")] == [memo_key[1], memo_key[2]] else None


def _remember(memo_key: tuple[str, int, int], digest: str) -> str:
    if memo_key[1] >= 1 << 20:  # small files hash faster than a memo is read
        try:
            write_text_atomic(_memo_path(memo_key[0]), json.dumps({"size": memo_key[1], "mtime_ns": memo_key[2], "sha256": digest}))
        except OSError:
            pass  # a read-only home only costs hashing again
    return digest


def canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` in which files are replaced by their content hashes.

    An object may say what it contributes with ``__cache_content__()`` (a step output: its result, not when
    it ran; an engine: what it makes, not where it runs).
    """
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


def key_inputs(key: tuple[str, ...], arguments: dict[str, Any]) -> dict[str, Any]:
    """The values the key entries name: a parameter, or an attribute path into one (``captions.result.ass``)."""
    values = {}
    for entry in key:
        name, *attributes = entry.split(".")
        value = arguments[name]
        for attribute in attributes:
            value = getattr(value, attribute)
        values[entry] = value
    return values


def step_key(step: str, version: str, inputs: dict[str, Any]) -> str:
    """The one key of a step: its name and version and the content of the inputs that change its output."""
    payload = json.dumps([KEY_SCHEMA, step, version, canonical(inputs)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --- where steps keep their files and results ----------------------------------------------------------


def results_dir() -> Path:
    """Where Prefect persists task results (and cache records) between runs."""
    return podforge_home() / "results"


def artifacts_dir() -> Path:
    """Where steps write their files, one folder per step and key."""
    return podforge_home() / "artifacts"


def step_workdir(step: str, key: str) -> Path:
    workdir = artifacts_dir() / step / key[:24]
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


# --- results as JSON, with the hashes of their files --------------------------------------------------


def files_of(value: Any) -> dict[str, str]:
    """Every existing file a result points to, with its sha256 (what makes the result valid)."""
    found: dict[str, str] = {}

    def walk(item: Any) -> None:
        if isinstance(item, BaseModel):
            for _, child in item:
                walk(child)
        elif isinstance(item, Path):
            if item.is_file():
                found[str(item)] = file_fingerprint(item)
        elif isinstance(item, dict):
            for child in item.values():
                walk(child)
        elif isinstance(item, (list, tuple)):
            for child in item:
                walk(child)

    walk(value)
    return found


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _model_class(name: str) -> type[BaseModel]:
    """The model class ``module:Class`` of a stored result, only from Podforge's own packages."""
    module_name, _, class_name = name.partition(":")
    if not module_name.startswith(RESULT_MODULES) or not class_name.isidentifier():
        raise ValueError(f"a cached result may not be a {name!r}")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ValueError(f"{name!r} is not a result model")
    return cls


def result_type(model: BaseModel) -> dict[str, Any]:
    """How to rebuild ``model``'s class: its name, and for a generic model (``StepOutput[Master]``) its arguments.

    A generic model made without arguments (``StepOutput(record=..., result=master)``) takes them from the
    values of the fields its type parameters annotate.
    """
    generic = model.__pydantic_generic_metadata__
    origin = generic["origin"] or type(model)
    args = generic["args"] or tuple(_argument_from_value(model, parameter) for parameter in generic["parameters"])
    return {"type": _qualified_name(origin), "args": [_qualified_name(arg) for arg in args]}


def _argument_from_value(model: BaseModel, parameter: Any) -> type:
    for name, info in type(model).model_fields.items():
        if info.annotation is parameter:
            return type(getattr(model, name))
    raise TypeError(f"{type(model).__name__}: no field shows what {parameter} is")


class ResultSerializer(Serializer):
    """Prefect result serializer: a Podforge model as JSON, with the sha256 of every file it points to."""

    type: Literal["podforge-json"] = "podforge-json"

    def dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, BaseModel):
            raise TypeError(f"Podforge caches pydantic results, not {type(obj).__name__}")
        payload = {**result_type(obj), "value": obj.model_dump(mode="json"), "files": files_of(obj)}
        return json.dumps(payload).encode("utf-8")

    def loads(self, blob: bytes) -> Any:
        payload = json.loads(blob)
        cls = _model_class(payload["type"])
        if payload.get("args"):
            cls = cls[tuple(_model_class(arg) for arg in payload["args"])]  # type: ignore[index]
        return cls.model_validate(payload["value"])


def stored_result(key: str) -> dict[str, Any] | None:
    """The raw stored payload for ``key`` (type, value, files), or None if there is none."""
    path = results_dir() / key
    if not path.is_file():
        return None
    record = json.loads(path.read_bytes())
    serializer = record.get("metadata", {}).get("serializer", {}).get("type")
    if serializer != ResultSerializer().type:
        raise ValueError(f"stored with serializer {serializer!r}, not {ResultSerializer().type!r}")
    return json.loads(record["result"])


def broken_files(files: dict[str, str]) -> list[str]:
    """Which of the recorded files are missing or no longer hold the content they were made with."""
    broken = []
    for name, digest in files.items():
        path = Path(name)
        if not path.is_file() or file_fingerprint(path) != digest:
            broken.append(name)
    return broken


def evict_if_broken(step: str, key: str) -> bool:
    """Delete the cached result of ``key`` if it cannot be trusted; True when it was deleted.

    Untrusted: unreadable, stored by another serializer (pickle would be code execution), or pointing to a
    file that is missing or changed since the result was made (deleted, truncated, overwritten).
    """
    try:
        payload = stored_result(key)
        if payload is None:
            return False
        _model_class(payload["type"])
        broken = broken_files(payload.get("files", {}))
        why = f"its file(s) {', '.join(Path(name).name for name in broken)} are missing or changed" if broken else ""
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"the stored result is unusable ({exc})"
    if not why:
        return False
    log.warning("cached %s step %s: %s; running it again", step, key[:12], why)
    (results_dir() / key).unlink(missing_ok=True)
    return True


@dataclass
class StepKey(CachePolicy):
    """Prefect cache policy: :func:`step_key` of the parameters a step declares (and nothing else).

    Before a key is returned, a broken cached entry for it is evicted, so Prefect runs the step again.
    """

    step: str = ""
    version: str = ""
    params: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        key = step_key(self.step, self.version, key_inputs(self.params, inputs))
        evict_if_broken(self.step, key)
        return key
