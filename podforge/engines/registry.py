"""Engines by name, from the ``engines:`` section of the config."""

from __future__ import annotations

import importlib
import json
import threading
from typing import Any

from podforge.config import PodforgeConfig, deep_merge
from podforge.engines.base import Engine, EngineKind, EngineSpec
from podforge.errors import ConfigError, EngineError

_instances: dict[str, Engine] = {}
_instances_lock = threading.Lock()


def engine_class(impl: str, *, where: str = "engines") -> type[Engine]:
    module_name, _, class_name = impl.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load engine implementation {impl!r}: {exc}", field=where) from None
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ConfigError(f"{impl!r} is not a podforge Engine", field=where)
    return cls


def resolve_engine(config: PodforgeConfig, name: str, kind: EngineKind, *, settings: dict[str, Any] | None = None, field: str = "") -> EngineSpec:
    """The :class:`EngineSpec` for engine ``name``, checked to serve ``kind``."""
    entry = config.engines.get(name)
    if entry is None:
        known = ", ".join(sorted(config.engines))
        raise ConfigError(f"unknown engine {name!r}; known engines: {known}", field=field or "engines")
    cls = engine_class(entry.impl, where=f"engines.{name}.impl")
    if cls.kind != kind:
        raise ConfigError(f"engine {name!r} makes {cls.kind}, not {kind}", field=field or f"engines.{name}")
    merged = deep_merge(entry.settings, settings or {})
    return EngineSpec(name=name, impl=entry.impl, kind=cls.kind, version=cls.version, settings=merged, resources=cls.resources_for(merged))


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
