"""The episode plan: who speaks with which voice, which engine makes each step, placed on this machine.

:func:`plan_episode` is the one place that casts voices and resolves engines. The flow builds its DAG
from the plan, the CLI checks a script by planning it before Prefect starts, and the benchmark loop runs
the same plan without Prefect. Planning also checks what would otherwise fail late: every engine exists
and its settings are valid, its isolated environment is built, every portrait is a usable picture of a face.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from podforge.config import EpisodeTiming, GpuSettings, PodforgeConfig
from podforge.engines.base import EngineSpec, MusicRequest
from podforge.engines.registry import engine_class, resolve_engine
from podforge.envs import python_for
from podforge.errors import ConfigError, EngineError
from podforge.gpu import GpuInfo
from podforge.media.portraits import load_portrait
from podforge.preflight import check_limits, check_voices, resolve_portraits
from podforge.runner import step_logger
from podforge.script import EpisodeMusic, Script


class HostPlan(BaseModel):
    """One host: their position in the cast (what cached steps know them by), name, voice and portrait."""

    position: int
    name: str
    voice: str
    speech: EngineSpec
    portrait: Path | None = None


class LinePlan(BaseModel):
    index: int
    host: int
    speaker: str
    text: str
    chapter: int
    source_line: int = Field(description="where the line is in the script file, for messages")


class EpisodePlan(BaseModel):
    script: Script
    hosts: list[HostPlan]
    lines: list[LinePlan]
    language: str
    music: EngineSpec
    music_request: MusicRequest
    video: EngineSpec
    avatar: EngineSpec | None = None
    asr: EngineSpec | None = Field(default=None, description="the speech QA recogniser; None: QA is off, or cannot hear the language")
    timing: EpisodeTiming
    warnings: list[str] = Field(default_factory=list, description="what the episode survives but a person should know (shared voices, foreign letters)")

    @property
    def host_names(self) -> list[str]:
        return [host.name for host in self.hosts]

    @property
    def talking_heads(self) -> bool:
        """Every host has a portrait: the picture is talking heads, else the audiogram."""
        return self.avatar is not None

    def engines(self) -> list[EngineSpec]:
        return [*(host.speech for host in self.hosts), self.music, self.video, *(spec for spec in (self.avatar, self.asr) if spec)]


def plan_episode(config: PodforgeConfig, script: Script, gpus: list[GpuInfo], *, check_environments: bool = True) -> EpisodePlan:
    """The whole episode's casting and engines, checked; raises a one-line :class:`PodforgeError` if it cannot run."""
    check_limits(script, config.limits)
    if config.ffmpeg and not Path(config.ffmpeg).is_file():  # before any speech: the flow first runs ffmpeg once the lines are being spoken
        raise ConfigError(f"ffmpeg binary not found: {config.ffmpeg}", field="ffmpeg")
    hosts = [cast_host(config, script, position, name, gpus) for position, name in enumerate(script.speakers)]
    position_of = {host.name: host.position for host in hosts}
    warnings = check_voices(script, config, [(host.name, host.voice) for host in hosts])
    portraits = resolve_portraits(script, config)
    for host in hosts:
        host.portrait = portraits.get(host.name)
        if host.portrait is not None:
            load_portrait(host.portrait, host.name)  # a bad portrait fails here, naming host and file
    plan = EpisodePlan(
        script=script,
        hosts=hosts,
        lines=[
            LinePlan(index=line.index, host=position_of[line.speaker], speaker=line.speaker, text=line.text, chapter=line.chapter, source_line=line.source_line)
            for line in script.lines
        ],
        language=script.meta.language,
        music=place(plan_music(config, script), config.gpu, gpus),
        music_request=MusicRequest(prompt=music_prompt(config, script), bars=config.music.bars, seed=config.music.seed),
        video=place(resolve_engine(config, config.use.video, "video", field="use.video"), config.gpu, gpus),
        avatar=place(resolve_engine(config, config.use.avatar, "avatar", field="use.avatar"), config.gpu, gpus) if portraits else None,
        asr=plan_recogniser(config, script.meta.language, gpus),
        timing=config.mix.timing(),
        warnings=warnings,
    )
    if check_environments:
        for engine in plan.engines():
            if engine.resources.env:
                python_for(engine.resources.env)  # "environment 'coqui' is not built; run `podforge envs build coqui`"
    return plan


def plan_recogniser(config: PodforgeConfig, language: str, gpus: list[GpuInfo]) -> EngineSpec | None:
    """The speech QA recogniser, placed; None when ``qa.asr`` is off or its model cannot hear ``language``."""
    if not config.qa.asr:
        return None
    spec = place(resolve_engine(config, config.qa.asr, "asr", field="qa.asr"), config.gpu, gpus)
    cls = engine_class(spec.impl)
    if not cls.hears(cls.Settings.model_validate(spec.settings), language):
        step_logger().warning("speech QA skipped: the recogniser %r does not hear %r (choose a multilingual model in qa.asr)", spec.name, language)
        return None
    return spec


def cast_host(config: PodforgeConfig, script: Script, position: int, name: str, gpus: list[GpuInfo]) -> HostPlan:
    """A host's voice preset (named in the front matter, else the next default voice) and its engine."""
    host = script.meta.hosts.get(name)
    voice_name, voice = config.voice_for(name, host.voice if host else None, position, script.source)
    spec = resolve_engine(config, voice.engine, "speech", settings=voice.settings, field=f"voices.{voice_name}.engine", settings_field=f"voices.{voice_name}.settings")
    return HostPlan(position=position, name=name, voice=voice_name, speech=place(spec, config.gpu, gpus))


def plan_music(config: PodforgeConfig, script: Script) -> EngineSpec:
    """The bed's engine, with its LoRA adapter if one is asked for.

    The front matter's ``music: {engine, adapter}`` wins, as a whole, over ``use.music`` (``ENGINE`` or
    ``ENGINE:ADAPTER``, what ``--music`` sets): an engine named there comes without ``use.music``'s adapter,
    an adapter alone takes ``use.music``'s engine. The engine is resolved with the config's own settings
    first, so that a problem there is named in the config, and only then with the adapter, whose problems
    are named where it was asked for (the script's file and field, or ``use.music``).
    """
    engine, _, adapter = config.use.music.partition(":")
    field, source = "use.music", None
    chosen = script.meta.music
    if isinstance(chosen, EpisodeMusic) and (chosen.engine or chosen.adapter):
        engine, adapter = chosen.engine or engine, chosen.adapter or ""
        field, source = "music", script.source
    try:
        spec = resolve_engine(config, engine, "music", field=field)
        return resolve_engine(config, engine, "music", settings={"adapter": adapter}, field=field, settings_field=field) if adapter else spec
    except ConfigError as exc:
        if source is None or not (exc.field or "").startswith(field):
            raise
        raise ConfigError(exc.message, file=source, field=exc.field) from None


def music_prompt(config: PodforgeConfig, script: Script) -> str:
    chosen = script.meta.music
    prompt = chosen.prompt if isinstance(chosen, EpisodeMusic) else chosen
    return prompt or config.music.default_prompt


def place(spec: EngineSpec, settings: GpuSettings, gpus: list[GpuInfo]) -> EngineSpec:
    """``spec`` as it will run here: unchanged, or moved to the CPU when no GPU exists and that is allowed.

    The CPU spec says ``device: cpu`` in its settings (the engine reads it) and so gets its own cache key.
    """
    if spec.resources.device != "cuda" or gpus:
        return spec
    if not (spec.resources.cpu_fallback or settings.cpu_fallback):
        raise EngineError(
            f"engine {spec.name!r} needs a CUDA GPU, but no NVIDIA GPU was found (NVML sees none); "
            "to run it on the CPU (slowly), set `gpu: {cpu_fallback: true}` in your config, or choose a CPU engine",
            field=f"engines.{spec.name}",
        )
    step_logger().warning("no GPU found: engine %r falls back to the CPU", spec.name)
    return spec.model_copy(
        update={
            "settings": {**spec.settings, "device": "cpu"},
            "resources": spec.resources.model_copy(update={"device": "cpu", "vram_gb": 0.0}),
        }
    )
