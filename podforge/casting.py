"""Casting: which engine runs each step, placed on a GPU or the CPU, and which voice speaks for each host."""

from __future__ import annotations

from pydantic import BaseModel

from podforge.config import PodforgeConfig
from podforge.engines.base import EngineKind, EngineSpec
from podforge.engines.registry import resolve_engine
from podforge.gpu import GpuInfo, resolve_device
from podforge.script import Script


class CastMember(BaseModel):
    voice: str
    engine: EngineSpec


def engine_for(config: PodforgeConfig, name: str, kind: EngineKind, gpus: list[GpuInfo], *, settings: dict | None = None, field: str = "") -> EngineSpec:
    """Engine ``name`` as it will run on this machine (a CUDA engine may fall back to the CPU, by config)."""
    return resolve_device(resolve_engine(config, name, kind, settings=settings, field=field), config.gpu, gpus)


def cast_voices(script: Script, config: PodforgeConfig, gpus: list[GpuInfo]) -> dict[str, CastMember]:
    """Each speaker's voice preset (named in the front matter, else the next default voice)."""
    cast: dict[str, CastMember] = {}
    for position, speaker in enumerate(script.speakers):
        host = script.meta.hosts.get(speaker)
        name, voice = config.voice_for(speaker, host.voice if host else None, position, script.source)
        engine = engine_for(config, voice.engine, "speech", gpus, settings=voice.settings, field=f"voices.{name}.engine")
        cast[speaker] = CastMember(voice=name, engine=engine)
    return cast
