"""Casting: which voice, and so which speech engine, speaks for each host."""

from __future__ import annotations

from pydantic import BaseModel

from podforge.config import PodforgeConfig
from podforge.engines.base import EngineSpec
from podforge.engines.registry import resolve_engine
from podforge.script import Script


class CastMember(BaseModel):
    voice: str
    engine: EngineSpec


def cast_voices(script: Script, config: PodforgeConfig) -> dict[str, CastMember]:
    """Each speaker's voice preset (named in the front matter, else the next default voice)."""
    cast: dict[str, CastMember] = {}
    for position, speaker in enumerate(script.speakers):
        host = script.meta.hosts.get(speaker)
        name, voice = config.voice_for(speaker, host.voice if host else None, position, script.source)
        engine = resolve_engine(config, voice.engine, "speech", settings=voice.settings, field=f"voices.{name}.engine")
        cast[speaker] = CastMember(voice=name, engine=engine)
    return cast
