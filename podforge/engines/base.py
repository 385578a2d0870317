"""The engine contract every engine implements, like a ComfyUI node or a diffusers pipeline.

An engine declares its ``name``, its ``kind`` (what step it serves), the ``resources`` it needs
(device, VRAM, isolated environment) and typed ``Request``/``Result`` models. ``run`` takes a request
and a working directory and returns a result whose paths point into that directory.

Adding an engine is one module that subclasses :class:`Engine` plus one entry under ``engines:`` in
``configs/default.yaml``; nothing in ``flows/`` or ``tasks/`` changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

EngineKind = Literal["speech", "music", "video", "avatar"]
Device = Literal["cpu", "cuda"]


class Resources(BaseModel):
    """What an engine needs to run. ``env`` names an isolated environment under ``external/``."""

    model_config = ConfigDict(frozen=True)

    device: Device = "cpu"
    vram_gb: float = Field(default=0.0, ge=0)
    env: str | None = None
    cpu_fallback: bool = Field(default=False, description="may run on the CPU when no GPU is present")


class EngineSpec(BaseModel):
    """A resolved engine: everything that identifies its output (part of every cache key)."""

    model_config = ConfigDict(frozen=True)

    name: str
    impl: str
    kind: EngineKind
    version: str
    settings: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)


class SpeechRequest(BaseModel):
    text: str
    language: str = "en"
    voice: str = Field(description="voice preset name, for logs; the settings carry what matters")


class WordTiming(BaseModel):
    text: str
    start_s: float
    end_s: float


class PhonemeTiming(BaseModel):
    phoneme: str
    start_s: float
    end_s: float


class Alignment(BaseModel):
    """What was said when, relative to the clip start: words for captions, phonemes for lips."""

    words: list[WordTiming] = Field(default_factory=list)
    phonemes: list[PhonemeTiming] = Field(default_factory=list)


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


RequestT = TypeVar("RequestT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)


class Engine(ABC, Generic[RequestT, ResultT]):
    """Base class of all engines. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    kind: ClassVar[EngineKind]
    version: ClassVar[str] = "1"
    """Bump when the same request starts producing different output (invalidates caches)."""
    Request: ClassVar[type[BaseModel]]
    Result: ClassVar[type[BaseModel]]

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = dict(settings or {})

    @classmethod
    def resources_for(cls, settings: dict[str, Any]) -> Resources:
        """Resources needed with these settings (a GPU engine may say ``cpu`` when asked to)."""
        return Resources()

    @abstractmethod
    def run(self, request: RequestT, workdir: Path) -> ResultT:
        """Produce the result for ``request``, writing files only inside ``workdir``."""
