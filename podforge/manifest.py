"""The episode manifest (``manifest.json``): every step and every published file, with hashes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from podforge.cost import price_gpu_seconds
from podforge.media.ffmpeg import Loudness
from podforge.gpu import GpuUsage
from podforge.media.quality import QualityCheck
from podforge.steps import StepRecord


class FileEntry(BaseModel):
    path: str
    sha256: str
    bytes: int


class SpokenAs(BaseModel):
    """A stretch of a script line that the voices say differently from how it is written ("$4/hr")."""

    line: int = Field(description="the line's number in the script file")
    speaker: str
    written: str
    spoken: str


class ManifestStep(BaseModel):
    step: str
    key: str = Field(description="the step's content key (its work folder: artifacts/<step>/<key[:24]>)")
    engine: str
    device: str
    seconds: float
    load_s: float = Field(default=0.0, description="of `seconds`, starting the engine and loading its model")
    compute_s: float = Field(default=0.0, description="of `seconds`, the engine's runner computing (what GPU-seconds are measured over)")
    started_at: float | None = Field(default=None, description="when the run that made it started it (Unix time)")
    cached: bool
    gpu: GpuUsage = Field(default_factory=GpuUsage)
    cost_usd: float = Field(default=0.0, description="the step's GPU-seconds priced on `gpu_priced_as`")
    notes: dict = Field(default_factory=dict)


class EpisodeManifest(BaseModel):
    podforge_version: str
    slug: str
    title: str
    show: str
    script_source: str
    script_sha256: str
    flow_run_id: str | None
    out_dir: Path
    duration_s: float
    loudness: Loudness = Field(description="of the delivered MP3, measured with ffmpeg's ebur128 filter after encoding")
    master_loudness: Loudness
    video_encoder: str
    video_encoder_reason: str
    gpu_seconds: float
    gpu_cost_usd: float
    gpu_priced_as: str = Field(description="the configs/pricing.yaml GPU the GPU-seconds are priced on")
    steps: list[ManifestStep]
    quality: list[QualityCheck] = Field(default_factory=list, description="what the episode measured about itself, each against its target")
    files: dict[str, FileEntry]
    feed: Path = Field(description="the show's RSS feed that lists this episode")
    spoken_as: list[SpokenAs] = Field(default_factory=list, description="where the text as spoken (numbers, money, code read out) differs from the script")
    warnings: list[str] = Field(default_factory=list, description="what the pre-flight noticed and the episode survived (shared voices, letters a voice cannot read)")

    @property
    def quality_passed(self) -> bool:
        return all(check.passed for check in self.quality)

    @staticmethod
    def step_rows(records: list[StepRecord], attempt: str | None, price_as: str) -> list[ManifestStep]:
        """One row per step; GPU-seconds (compute, not model loading) priced on ``price_as``."""
        return [
            ManifestStep(
                step=r.step,
                key=r.key,
                engine=r.engine,
                device=r.device,
                seconds=r.seconds,
                load_s=r.load_s,
                compute_s=r.compute_s,
                started_at=r.started_at,
                cached=r.cached_in(attempt),
                gpu=r.gpu,
                cost_usd=round(price_gpu_seconds(r.gpu.gpu_seconds, price_as), 6) if r.gpu.gpu_seconds else 0.0,
                notes=r.notes,
            )
            for r in records
        ]
