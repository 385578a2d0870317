"""The engine contract every engine implements, like a ComfyUI node or a diffusers pipeline.

An engine declares its ``name``, its ``kind`` (which step it serves), typed ``Settings`` (what the config
may set for it), the ``resources`` it needs with those settings (device, VRAM, isolated environment) and
the ``Request``/``Result`` of its kind. ``run`` takes a request and a working directory and returns a
result whose paths point into that directory.

The kinds and their request/result types are declared once, in :data:`KINDS`; the registry checks an
engine against them when it resolves it. Adding an engine is one module that subclasses :class:`Engine`
plus one entry under ``engines:`` in ``configs/default.yaml``; nothing in ``flows/`` or ``tasks/`` changes.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from podforge.errors import ConfigError
from podforge.media.quality import QualityCheck
from podforge.timing import Alignment, SpeakerAlignment, WordTiming

EngineKind = Literal["speech", "music", "video", "avatar", "asr"]
Device = Literal["cpu", "cuda"]


class Resources(BaseModel):
    """What an engine needs to run. ``env`` names an isolated environment under ``external/``."""

    model_config = ConfigDict(frozen=True)

    device: Device = "cpu"
    vram_gb: float = Field(default=0.0, ge=0)
    env: str | None = None
    cpu_fallback: bool = Field(default=False, description="may run on the CPU when no GPU is present")


class EngineSettings(BaseModel):
    """Base of every engine's ``Settings``: unknown keys are errors, so a typo in the config is caught."""

    model_config = ConfigDict(extra="forbid")


class EngineSpec(BaseModel):
    """A resolved engine: everything that identifies its output (part of every cache key).

    ``settings`` is the engine's validated ``Settings``, defaults filled in, as JSON-able data: what the
    runner of an isolated engine receives. ``files`` repeats the settings that name files or folders
    (models, reference recordings) as paths, so the cache key hashes them by content, and ``env_hash``
    identifies the isolated environment's pins.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    impl: str
    kind: EngineKind
    version: str
    settings: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, Path | list[Path]] = Field(default_factory=dict)
    env_hash: str | None = None
    resources: Resources = Field(default_factory=Resources)

    def __cache_content__(self) -> dict[str, Any]:
        """What makes this engine's output: not its resources (a placement decided per machine)."""
        return {"impl": self.impl, "version": self.version, "settings": self.settings, "files": self.files, "env": self.env_hash}


# --- the kinds: one request and one result type each -------------------------------------------------


class SpeechRequest(BaseModel):
    text: str
    language: str = "en"
    take: int = Field(default=0, ge=0, description="0: the engine's default; n > 0: the n-th retake (new noise or seed)")


class SpeechResult(BaseModel):
    wav: Path
    sample_rate: int
    duration_s: float
    alignment: Alignment


class MusicRequest(BaseModel):
    prompt: str
    duration_s: float | None = Field(default=None, description="None: the engine's natural loop length")
    bars: int | None = None
    seed: int = 0
    sample_rate: int = 48000


class MusicResult(BaseModel):
    wav: Path
    duration_s: float
    tempo_bpm: float | None = None
    loopable: bool = True
    description: str = ""
    notes: dict[str, str] = Field(default_factory=dict, description="what the engine used beyond the request (a LoRA adapter's name and hash), for the manifest")


class VideoRequest(BaseModel):
    """Render the episode picture for a finished master: title card, waveform, captions."""

    audio: Path
    captions_ass: Path
    title: str
    show: str
    duration_s: float
    width: int = 1280
    height: int = 720
    fps: int = 25
    encoder: str = "libx264"
    encoder_options: dict[str, str] = Field(default_factory=dict)
    ffmpeg: str | None = Field(default=None, description="the ffmpeg binary (config `ffmpeg:`); None: imageio-ffmpeg's")


class VideoResult(BaseModel):
    video: Path = Field(description="video-only MP4 (H.264)")
    encoder: str
    frames: int
    notes: dict[str, str] = Field(default_factory=dict, description="what the engine decided (encoder_fallback: why NVENC was not used…)")


class AvatarRequest(BaseModel):
    """One host's talking head over the whole episode, on the episode timeline.

    ``audio`` may be the host's own track or the whole dialogue track: ``alignment.intervals`` says when
    this host speaks, and an engine keeps the mouth still outside them. ``audio_offset_s`` is where the
    audio's first sample sits on the episode timeline (the dialogue track starts after the intro).
    """

    speaker: str = Field(description="the host's name, for messages only")
    portrait: Path
    audio: Path
    audio_offset_s: float = Field(default=0.0, ge=0, description="where the audio starts on the episode timeline")
    alignment: SpeakerAlignment = Field(default_factory=SpeakerAlignment)
    duration_s: float = Field(gt=0, description="length of the video: the whole episode")
    width: int = Field(default=512, ge=64, le=3840)
    height: int = Field(default=512, ge=64, le=2160)
    fps: int = Field(default=25, ge=1, le=60)
    encoder: str = "libx264"
    encoder_options: dict[str, str] = Field(default_factory=dict)
    seed: int = Field(default=0, description="blinks and head motion are random but repeatable")
    deliver: Literal["video", "animation"] = Field(
        default="video",
        description="animation: an engine that can render its frames on demand may return an animation instead of encoding a video "
        "(the layout then draws the host straight into the episode picture, which is encoded once); other engines deliver a video",
    )


class AvatarResult(BaseModel):
    """One host's talking head: a video, or an animation that the engine which made it renders on demand.

    An engine that returns ``animation`` implements ``frames(result) -> Iterator[numpy.ndarray]``: the
    RGB uint8 frames (height × width × 3 of the request) of that animation, in order.
    """

    video: Path | None = Field(default=None, description="video-only MP4 (H.264) of this host, the whole episode long")
    animation: Path | None = Field(default=None, description="an engine-specific file its frames are rendered from (no video was encoded)")
    frames: int
    encoder: str = Field(description="the H.264 encoder of the video; empty for an animation")
    notes: dict[str, str] = Field(default_factory=dict, description="what the engine decided (downscaled portrait, chunks…)")
    quality: list[QualityCheck] = Field(default_factory=list, description="what the engine checked about its own output (lip sync), for the manifest")

    @model_validator(mode="after")
    def _a_picture(self) -> AvatarResult:
        if self.video is None and self.animation is None:
            raise ValueError("an avatar result needs a video or an animation")
        return self


class AsrRequest(BaseModel):
    """Transcribe one clip (the speech QA step)."""

    audio: Path
    language: str = "en"


class AsrResult(BaseModel):
    text: str
    words: list[WordTiming] = Field(description="what was heard when, relative to the clip start")
    language: str
    model: str = Field(description="the recogniser model that heard it")


class KindTypes(NamedTuple):
    request: type[BaseModel]
    result: type[BaseModel]


KINDS: dict[str, KindTypes] = {
    "speech": KindTypes(SpeechRequest, SpeechResult),
    "music": KindTypes(MusicRequest, MusicResult),
    "video": KindTypes(VideoRequest, VideoResult),
    "avatar": KindTypes(AvatarRequest, AvatarResult),
    "asr": KindTypes(AsrRequest, AsrResult),
}
"""Every engine kind, with the request it takes and the result it gives (subclasses may add fields)."""


# --- the engine --------------------------------------------------------------------------------------

RequestT = TypeVar("RequestT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)


class DoctorFinding(BaseModel):
    """One line of ``podforge envs doctor``: what was checked, how it went, and what to do about it."""

    level: Literal["ok", "info", "warn", "error"]
    message: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.message} → {self.fix}" if self.fix else self.message


class Engine(ABC, Generic[RequestT, ResultT]):
    """Base of all engines. Subclasses set the class attributes and implement :meth:`run`.

    ``self.settings`` is an instance of the engine's ``Settings`` (subclasses annotate it with their own type).
    """

    name: ClassVar[str]
    kind: ClassVar[EngineKind]
    version: ClassVar[str] = "1"
    """Bump when the same request starts producing different output (invalidates caches)."""
    Request: ClassVar[type[BaseModel]]
    Result: ClassVar[type[BaseModel]]
    Settings: ClassVar[type[EngineSettings]] = EngineSettings
    retakes: ClassVar[bool] = False
    """Speech engines: True when ``SpeechRequest.take`` changes the output (new noise), so QA may retake a line."""

    def __init__(self, settings: EngineSettings | dict[str, Any] | None = None):
        self.settings = settings if isinstance(settings, self.Settings) else validate_settings(type(self), dict(settings or {}), f"engines.{self.name}.settings")

    @classmethod
    def resources_for(cls, settings: Any) -> Resources:
        """Resources needed with these settings (a GPU engine may say ``cpu`` when asked to)."""
        return Resources()

    @classmethod
    def hears(cls, settings: Any, language: str) -> bool:
        """ASR engines: whether the model understands ``language`` (else the speech QA step is skipped)."""
        return True

    @classmethod
    def doctor_checks(cls, settings: Any) -> list[DoctorFinding]:
        """What ``podforge envs doctor`` should check for this engine beyond its environment (weights…)."""
        return []

    @abstractmethod
    def run(self, request: RequestT, workdir: Path) -> ResultT:
        """Produce the result for ``request``, writing files only inside ``workdir``."""

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Held around :meth:`run` by a step. An engine that computes one request at a time (one model
        session shared by several presets) waits here, so the step can tell time queued from time worked."""
        yield


def validate_settings(cls: type[Engine], settings: dict[str, Any], field: str) -> EngineSettings:
    """``settings`` as ``cls.Settings``; a bad value is a ConfigError naming ``field`` and the setting."""
    try:
        return cls.Settings.model_validate(settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in (field, *error["loc"]))
        message = f"unknown setting for engine {cls.name!r}" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        raise ConfigError(message, field=where) from None


def _absolute(path: Path) -> Path:
    from podforge.config import models_dir

    path = path.expanduser()
    return path if path.is_absolute() else models_dir() / path


ModelPath = Annotated[Path, AfterValidator(_absolute)]
"""A model file or folder in engine settings: relative paths are read under ``$PODFORGE_HOME/models``.

Being a :class:`~pathlib.Path`, it enters cache keys by content, so a model replaced in place is noticed."""
