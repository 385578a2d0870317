"""Engines by name, from the ``engines:`` section of the config."""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from podforge.config import PodforgeConfig, deep_merge
from podforge.engines.base import KINDS, Engine, EngineKind, EngineSettings, EngineSpec, validate_settings
from podforge.envs import env_hash
from podforge.errors import ConfigError, EngineError

_instances: dict[str, Engine] = {}
_instances_lock = threading.Lock()


def engine_class(impl: str, *, where: str = "engines") -> type[Engine]:
    """The class behind ``module:Class``, checked against the contract of its kind."""
    module_name, _, class_name = impl.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load engine implementation {impl!r}: {exc}", field=where) from None
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ConfigError(f"{impl!r} is not a podforge Engine", field=where)
    check_contract(cls, where)
    return cls


def check_contract(cls: type[Engine], where: str) -> None:
    """The engine's kind exists and its Request, Result and Settings are that kind's types (or subclasses)."""
    kind = getattr(cls, "kind", None)
    if kind not in KINDS:
        raise ConfigError(f"{cls.__name__} declares kind {kind!r}; known kinds: {', '.join(KINDS)}", field=where)
    expected = KINDS[kind]
    for attribute, base in (("Request", expected.request), ("Result", expected.result), ("Settings", EngineSettings)):
        declared = getattr(cls, attribute, None)
        if not (isinstance(declared, type) and issubclass(declared, base)):
            raise ConfigError(f"{cls.__name__}.{attribute} must be {base.__name__} or a subclass of it (kind {kind!r})", field=where)


def resolve_engine(config: PodforgeConfig, name: str, kind: EngineKind, *, settings: dict[str, Any] | None = None, field: str = "", settings_field: str = "") -> EngineSpec:
    """The :class:`EngineSpec` for engine ``name``, checked to serve ``kind``, its settings validated.

    ``settings`` (a voice preset's, say) are merged over the registry entry's; an invalid value is reported
    at ``settings_field`` (default ``engines.<name>.settings``).
    """
    entry = config.engines.get(name)
    if entry is None:
        known = ", ".join(sorted(config.engines))
        raise ConfigError(f"unknown engine {name!r}; known engines: {known}", field=field or "engines")
    cls = engine_class(entry.impl, where=f"engines.{name}.impl")
    if cls.kind != kind:
        raise ConfigError(f"engine {name!r} makes {cls.kind}, not {kind}", field=field or f"engines.{name}")
    validated = validate_settings(cls, deep_merge(entry.settings, settings or {}), settings_field or f"engines.{name}.settings")
    resources = cls.resources_for(validated)
    return EngineSpec(
        name=name,
        impl=entry.impl,
        kind=cls.kind,
        version=cls.version,
        settings=validated.model_dump(mode="json"),
        files=named_files(validated),
        env_hash=env_hash(resources.env) if resources.env else None,
        resources=resources,
    )


def preload(specs: Iterable[EngineSpec]) -> threading.Thread:
    """Load the in-process engines among ``specs`` (their models load once per process) on a background
    thread, e.g. while Prefect's server starts. An engine that fails to load is left to the step that runs
    it, which reports the same error by name."""

    def load_all() -> None:
        for spec in specs:
            if spec.resources.env is None:
                with contextlib.suppress(Exception):
                    load_engine(spec)

    thread = threading.Thread(target=load_all, name="podforge-preload", daemon=True)
    thread.start()
    return thread


def named_files(settings: BaseModel) -> dict[str, Path | list[Path]]:
    """The settings whose values are paths (model files, reference recordings), for content keys."""
    files: dict[str, Path | list[Path]] = {}
    for name, value in settings:
        if isinstance(value, Path) or (isinstance(value, list) and value and all(isinstance(item, Path) for item in value)):
            files[name] = value
    return files


def load_engine(spec: EngineSpec) -> Engine:
    """One engine instance per process and settings, so models load once, not once per line."""
    key = json.dumps([spec.impl, spec.settings], sort_keys=True, default=str)
    with _instances_lock:
        if key not in _instances:
            cls = engine_class(spec.impl)
            try:
                _instances[key] = cls(spec.settings)
            except EngineError:
                raise
            except Exception as exc:  # an engine that cannot start is a setup problem, reported by name
                raise EngineError(f"engine {spec.name!r} failed to start: {exc}", field=f"engines.{spec.name}") from exc
        return _instances[key]
