"""Typed configuration, loaded from YAML.

``configs/default.yaml`` holds the defaults and the engine registry, ``configs/voices.yaml`` the voice
presets. A user file (``--config``) and per-episode overrides are merged on top, key by key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from podforge.errors import ConfigError
from podforge.training.settings import TrainingSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG_FILES = (CONFIG_DIR / "default.yaml", CONFIG_DIR / "voices.yaml")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineEntry(Strict):
    """One registry entry: the implementation (``module:Class``) and its default settings."""

    impl: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    settings: dict[str, Any] = Field(default_factory=dict)


class Voice(Strict):
    """A voice preset: which speech engine speaks it, and with which settings (model, speaker, pitch…)."""

    engine: str
    settings: dict[str, Any] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list, description="the languages it can speak (ISO 639-1: en, de, zh…); empty: not declared")
    licence: str | None = None

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, languages: list[str]) -> list[str]:
        for code in languages:
            if not re.fullmatch(r"[a-z]{2,3}", code):
                raise ValueError(f"{code!r} is not a language code; use ISO 639-1 codes such as en, de, zh")
        return languages


class EngineChoice(Strict):
    """The engine used for each step that is not chosen per voice."""

    music: str = Field(default="procedural", description="ENGINE, or ENGINE:ADAPTER for a LoRA adapter (`--music musicgen:STYLE`)")
    video: str = "audiogram"
    avatar: str = Field(default="portrait", description="talking heads, used when every host has a portrait")


class EpisodeTiming(Strict):
    """Where things sit in time: what the dialogue, captions, talking heads and layout depend on."""

    intro_s: float = Field(default=4.0, ge=0, le=60, description="music alone before the first line")
    outro_s: float = Field(default=5.0, ge=0, le=60, description="music alone after the last line")
    line_gap_s: float = Field(default=0.35, ge=0, le=5, description="silence between two lines")
    chapter_gap_s: float = Field(default=0.9, ge=0, le=10, description="silence before a new chapter")
    sample_rate: int = Field(default=48000, description="of the dialogue track and the master")

    def episode_s(self, dialogue_s: float) -> float:
        """The whole episode: intro, the dialogue, outro."""
        return self.intro_s + dialogue_s + self.outro_s


class MixLevels(Strict):
    """How loud things are: what only the mix (and what follows it) depends on."""

    bed_level_db: float = Field(default=-6.0, le=0, description="bed loudness relative to the speech in the intro and outro")
    speech_over_bed_db: float = Field(default=15.0, ge=6, le=40, description="under speech, 9 in 10 windows of 400 ms hear the bed at least this far below the speech")
    duck_ramp_s: float = Field(default=0.6, ge=0.05, le=5, description="how long the bed takes to go down before a line and up after one")
    duck_hold_s: float = Field(default=2.5, ge=0, le=30, description="pauses between lines shorter than this keep the bed down")
    target_lufs: float = Field(default=-16.0, ge=-40, le=-5)
    true_peak_db: float = Field(default=-1.0, ge=-9, le=0, description="true-peak limit of every delivered file (WAV, MP3, the MP4's AAC)")


class MixSettings(EpisodeTiming, MixLevels):
    """The ``mix:`` section. Steps take the part they depend on: :meth:`timing` or :meth:`levels`."""

    def timing(self) -> EpisodeTiming:
        return EpisodeTiming.model_validate(self.model_dump(include=set(EpisodeTiming.model_fields)))

    def levels(self) -> MixLevels:
        return MixLevels.model_validate(self.model_dump(include=set(MixLevels.model_fields)))


class MusicSettings(Strict):
    default_prompt: str = "warm, calm lo-fi podcast bed"
    bars: int = Field(default=8, ge=2, le=64)
    seed: int = 7


class VideoSettings(Strict):
    width: int = Field(default=1280, ge=64, le=3840)
    height: int = Field(default=720, ge=64, le=2160)
    fps: int = Field(default=25, ge=1, le=60)
    layout: Literal["side_by_side", "cut"] = Field(default="side_by_side", description="how talking heads share the frame")
    encoder: Literal["auto", "h264_nvenc", "libx264"] = "auto"
    x264_preset: str = "veryfast"
    crf: int = Field(default=23, ge=0, le=51)


class Encoding(Strict):
    """The delivered audio's bitrates: what the audio step depends on."""

    mp3_bitrate: str = Field(default="160k", pattern=r"^\d+k$")
    aac_bitrate: str = Field(default="160k", pattern=r"^\d+k$")


class PublishSettings(Encoding):
    base_url: str = Field(default="http://127.0.0.1:8000/", pattern=r"^https?://\S+$", description="where the output directory is served (feed URLs)")
    author: str = "Podforge"
    owner_name: str | None = Field(default=None, description="the feed's itunes:owner name; default: author")
    owner_email: str | None = Field(
        default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="the feed's itunes:owner e-mail, where podcast directories verify ownership"
    )
    category: str = "Technology"
    cover_size: int = Field(default=1400, ge=1400, le=3000, description="generated artwork, px square")

    def encoding(self) -> Encoding:
        return Encoding.model_validate(self.model_dump(include=set(Encoding.model_fields)))


class LimitSettings(Strict):
    """The ``limits:`` section: how big a script may be before it is refused in the pre-flight."""

    max_lines: int = Field(default=1000, ge=1, description="spoken lines in one episode")
    max_line_chars: int = Field(default=5000, ge=20, description="characters in one spoken line (long lines are spoken in pieces)")
    max_episode_minutes: float = Field(default=180.0, gt=0, description="estimated length of the spoken episode")
    words_per_minute: float = Field(default=150.0, ge=50, le=400, description="speaking rate the length is estimated with")


class RunSettings(Strict):
    """How an episode's tasks run on this machine (never part of a cache key)."""

    max_workers: int | None = Field(default=None, ge=1, le=64, description="tasks at once; default: from cores and free memory")


class GpuSettings(Strict):
    """The ``gpu:`` section of the config."""

    cpu_fallback: bool = Field(default=False, description="let every GPU engine run on the CPU when no GPU is found")
    guard: Literal["warn", "fail", "off"] = Field(default="warn", description="what a suspected silent CPU fallback does")
    min_utilization: float = Field(default=5.0, ge=0, le=100, description="mean GPU utilisation (%) below which a CUDA step is flagged")
    gpu_index: int = Field(default=0, ge=0, description="the GPU (NVML index) that GPU steps run on")
    price_as: str = Field(default="t4", description="the pricing.yaml GPU that GPU-seconds are priced on")


class QaSettings(Strict):
    """The ``qa:`` section: an offline recogniser checks every synthesised line (see :mod:`podforge.qa`)."""

    asr: str | None = Field(default="whisper", description="the recogniser (an `asr` engine); `off` skips the QA step")
    max_wer: float = Field(default=0.3, ge=0, le=1, description="a line heard with a higher word error rate is synthesised again")
    takes: int = Field(default=3, ge=1, le=10, description="takes of a bad line at most, the first included; the best is kept")

    @field_validator("asr", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as false."""
        return None if value in (False, None, "off", "none") else value


class PodforgeConfig(Strict):
    engines: dict[str, EngineEntry]
    voices: dict[str, Voice]
    default_voices: list[str] = Field(min_length=1)
    use: EngineChoice = Field(default_factory=EngineChoice)
    mix: MixSettings = Field(default_factory=MixSettings)
    music: MusicSettings = Field(default_factory=MusicSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    qa: QaSettings = Field(default_factory=QaSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    train_music: TrainingSettings = Field(default_factory=TrainingSettings, description="`podforge train-music`: LoRA fine-tuning of MusicGen")
    limits: LimitSettings = Field(default_factory=LimitSettings)
    assets_dir: Path | None = Field(default=None, description="a folder of portraits and other assets that scripts may name (relative to it)")
    ffmpeg: str | None = Field(default=None, description="path to an ffmpeg binary; default: imageio-ffmpeg's")
    speech: str | None = Field(default=None, description="a voice preset, or a speech engine, for every host (CLI --speech)")

    def voice_for(self, speaker: str, requested: str | None, position: int, source: str) -> tuple[str, Voice]:
        """The voice preset for a host.

        ``speech`` (when set) wins: a voice preset for everyone, or an engine whose presets are dealt out
        in order (those in ``default_voices`` if any, else all of them). Otherwise the voice the script
        names, else the n-th default voice.
        """
        if self.speech and self.speech not in self.voices:
            of_engine = [name for name in self.default_voices if name in self.voices and self.voices[name].engine == self.speech]
            of_engine = of_engine or [name for name, voice in self.voices.items() if voice.engine == self.speech]
            if not of_engine:
                raise ConfigError(f"{self.speech!r} is neither a voice preset nor a speech engine with presets in voices.yaml", field="speech")
            requested = of_engine[position % len(of_engine)]
        elif self.speech:
            requested = self.speech
        name = requested or self.default_voices[position % len(self.default_voices)]
        if name not in self.voices:
            known = ", ".join(sorted(self.voices))
            raise ConfigError(f"unknown voice {name!r} for {speaker}; known voices: {known}", file=source, field=f"hosts.{speaker}.voice")
        return name, self.voices[name]


def load_config(extra_files: list[Path] | tuple[Path, ...] = (), overrides: dict[str, Any] | None = None) -> PodforgeConfig:
    """Defaults, then each extra file, then ``overrides``: later values win, mappings merge."""
    merged: dict[str, Any] = {}
    sources: list[str] = []
    for path in (*DEFAULT_CONFIG_FILES, *(Path(p) for p in extra_files)):
        merged = deep_merge(merged, read_yaml_mapping(path))
        sources.append(str(path))
    if overrides:
        merged = deep_merge(merged, overrides)
        sources.append("overrides")
    try:
        return PodforgeConfig.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if _names_an_engine(error["loc"]) and error["type"] == "string_type":
            message = f"unknown engine {error['input']!r}; known engines: {', '.join(sorted(merged.get('engines') or {}))}"
        raise ConfigError(message, file=" + ".join(sources[len(DEFAULT_CONFIG_FILES) :]) or sources[-1], field=field) from None


def _names_an_engine(loc: tuple) -> bool:
    """Whether a config field holds an engine name (``use.music``, ``voices.joe.engine``, ``speech``)."""
    return (len(loc) == 2 and loc[0] == "use") or (len(loc) == 3 and loc[0] == "voices" and loc[2] == "engine") or loc == ("speech",)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such config file", file=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML{where}: {getattr(exc, 'problem', exc)}", file=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping at the top level", file=path)
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def podforge_home() -> Path:
    """Where caches, results and the embedded Prefect database live (``PODFORGE_HOME``)."""
    return Path(os.environ.get("PODFORGE_HOME", REPO_ROOT / ".podforge")).resolve()


def models_dir() -> Path:
    """Where relative model and reference-voice paths in engine settings are read from."""
    return podforge_home() / "models"
