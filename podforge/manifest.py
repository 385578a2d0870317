"""The episode manifest (``manifest.json``): every step and every published file, with hashes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from podforge.media.ffmpeg import Loudness
from podforge.gpu import GpuUsage
from podforge.steps import StepRecord


class FileEntry(BaseModel):
    path: str
    sha256: str
    bytes: int


class ManifestStep(BaseModel):
    step: str
    engine: str
    device: str
    seconds: float
    cached: bool
    gpu: GpuUsage = Field(default_factory=GpuUsage)
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
    loudness: Loudness = Field(description="measured on the published MP3 with ffmpeg's ebur128 filter")
    master_loudness: Loudness
    video_encoder: str
    video_encoder_reason: str
    gpu_seconds: float
    gpu_cost_usd: float
    steps: list[ManifestStep]
    files: dict[str, FileEntry]
    feed: Path = Field(description="the show's RSS feed that lists this episode")

    @staticmethod
    def step_rows(records: list[StepRecord], attempt: str | None) -> list[ManifestStep]:
        return [
            ManifestStep(step=r.step, engine=r.engine, device=r.device, seconds=r.seconds, cached=r.cached_in(attempt), gpu=r.gpu, notes=r.notes)
            for r in records
        ]
