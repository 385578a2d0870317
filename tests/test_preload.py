"""``podforge run`` loads the plan's in-process engines on a thread while Prefect's server starts, so the
first speech step finds its voice loaded; isolated engines are left to their workers."""

from __future__ import annotations

import threading
from pathlib import Path

from podforge.config import load_config
from podforge.engines import registry
from podforge.engines.registry import load_engine, preload
from podforge.planning import plan_episode
from podforge.script import load_script

REPO = Path(__file__).resolve().parent.parent


def test_preload_loads_the_plans_in_process_engines_once(monkeypatch):
    monkeypatch.setattr(registry, "_instances", {})
    plan = plan_episode(load_config(), load_script(REPO / "configs" / "episodes" / "demo.md"), [])
    in_process = [spec for spec in plan.engines() if spec.resources.env is None]
    assert any(spec.kind == "speech" for spec in in_process)
    preload(plan.engines()).join(timeout=300)
    loaded = dict(registry._instances)
    assert len(loaded) == len({(spec.impl, str(sorted(spec.settings.items()))) for spec in in_process})
    for spec in in_process:  # the steps get the very instances the thread loaded
        assert any(load_engine(spec) is engine for engine in loaded.values())
    assert registry._instances == loaded, "nothing loaded twice"


def test_preload_leaves_isolated_engines_and_failures_to_their_steps(monkeypatch):
    monkeypatch.setattr(registry, "_instances", {})
    plan = plan_episode(load_config(), load_script(REPO / "configs" / "episodes" / "demo.md"), [])
    voice = plan.hosts[0].speech
    isolated = voice.model_copy(update={"resources": voice.resources.model_copy(update={"env": "coqui"})})
    broken = voice.model_copy(update={"settings": {**voice.settings, "voice_package": "no_such_voice_package"}})
    failures = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    preload([isolated, broken]).join(timeout=60)
    assert registry._instances == {} and failures == []
