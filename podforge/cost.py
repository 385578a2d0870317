"""What GPU time costs: price tables from ``configs/pricing.yaml`` and the reference notes' arithmetic.

A cloud GPU costs its instance's hourly price divided by the instance's GPUs; a local GPU costs the
electricity it draws (board power x tariff). :func:`price_gpu_seconds` prices a step's measured
GPU-seconds; :func:`estimate` answers "what would N tracks (or videos) of M minutes cost on this GPU?"
from per-engine GPU-minutes per output minute, configured or measured (:func:`rate_from_gpu_seconds`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from podforge.config import CONFIG_DIR, read_yaml_mapping
from podforge.errors import ConfigError


PRICING_FILE = CONFIG_DIR / "pricing.yaml"
OutputKind = Literal["music", "video"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuPrice(Strict):
    """A cloud instance price (``instance_usd_per_hour`` / ``gpus_per_instance``) or a local GPU's power."""

    name: str
    instance: str | None = None
    instance_usd_per_hour: float | None = Field(default=None, ge=0)
    gpus_per_instance: int = Field(default=1, ge=1)
    power_watts: float | None = Field(default=None, gt=0)
    electricity_usd_per_kwh: float | None = Field(default=None, ge=0)
    source: str = ""

    @model_validator(mode="after")
    def _one_way_to_price(self) -> GpuPrice:
        local = self.power_watts is not None and self.electricity_usd_per_kwh is not None
        if (self.instance_usd_per_hour is None) == (not local):
            raise ValueError("give either instance_usd_per_hour, or power_watts and electricity_usd_per_kwh")
        return self

    @property
    def usd_per_hour(self) -> float:
        """The price of one GPU for one hour."""
        if self.instance_usd_per_hour is not None:
            return self.instance_usd_per_hour / self.gpus_per_instance
        assert self.power_watts is not None and self.electricity_usd_per_kwh is not None
        return self.power_watts / 1000 * self.electricity_usd_per_kwh


class Span(Strict):
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.high < self.low:
            raise ValueError("high must not be below low")
        return self

    def times(self, factor: float) -> Span:
        return Span(low=self.low * factor, high=self.high * factor)


class EngineRate(Strict):
    kind: OutputKind
    gpu_minutes_per_minute: Span = Field(description="GPU-minutes needed per minute of finished output")
    source: str = ""


class TrainingRow(Strict):
    """One row of the fine-tuning notes' table: hours of audio, hours of training on the reference GPU."""

    audio_hours: float = Field(gt=0)
    low: float = Field(ge=0)
    high: float = Field(ge=0)
    source: str = ""


class TrainingGpu(Strict):
    price: str = Field(description="the gpus: entry it is priced as")
    speed: float = Field(default=1.0, gt=0, description="times faster than the reference GPU")
    steps_per_second: float | None = Field(default=None, gt=0, description="measured optimizer steps per second, if known")


class TrainingRates(Strict):
    reference_gpu: str
    table: list[TrainingRow] = Field(min_length=1)
    gpus: dict[str, TrainingGpu]

    def reference_hours(self, audio_hours: float) -> Span:
        """Training hours on the reference GPU: the table interpolated, proportional beyond its ends."""
        rows = sorted(self.table, key=lambda row: row.audio_hours)
        points = [(0.0, 0.0, 0.0)] + [(row.audio_hours, row.low, row.high) for row in rows]
        for (x0, lo0, hi0), (x1, lo1, hi1) in zip(points, points[1:]):
            if audio_hours <= x1:
                t = (audio_hours - x0) / (x1 - x0)
                return Span(low=lo0 + t * (lo1 - lo0), high=hi0 + t * (hi1 - hi0))
        last = rows[-1]
        return Span(low=last.low, high=last.high).times(audio_hours / last.audio_hours)


class Pricing(Strict):
    gpus: dict[str, GpuPrice]
    engines: dict[str, EngineRate]
    defaults: dict[OutputKind, str]
    training: TrainingRates | None = None

    @model_validator(mode="after")
    def _defaults_exist(self) -> Pricing:
        for kind, engine in self.defaults.items():
            if engine not in self.engines:
                raise ValueError(f"defaults.{kind} names {engine!r}, which is not under engines")
        return self


@lru_cache(maxsize=4)
def load_pricing(path: Path = PRICING_FILE) -> Pricing:
    try:
        return Pricing.model_validate(read_yaml_mapping(path))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(error["msg"], file=path, field=".".join(str(part) for part in error["loc"])) from None


def gpu_price(gpu: str, pricing: Pricing | None = None) -> GpuPrice:
    """The price of ``gpu``: a key of pricing.yaml's ``gpus``, or a plain hourly price such as ``1.5``."""
    pricing = pricing or load_pricing()
    if gpu in pricing.gpus:
        return pricing.gpus[gpu]
    try:
        hourly = float(gpu)
    except ValueError:
        known = ", ".join(pricing.gpus)
        raise ConfigError(f"unknown GPU {gpu!r}; priced GPUs: {known} (or give a price per hour, e.g. 1.0)", file=PRICING_FILE, field="gpus") from None
    return GpuPrice(name=f"a ${hourly:g}/h GPU", instance_usd_per_hour=hourly, source="given on the command line")


def price_gpu_seconds(seconds: float, gpu: str, pricing: Pricing | None = None) -> float:
    """USD for ``seconds`` of one GPU of kind ``gpu``."""
    return seconds / 3600 * gpu_price(gpu, pricing).usd_per_hour


class Estimate(BaseModel):
    """What ``tracks`` pieces of output of ``minutes`` each cost in GPU time and money."""

    kind: OutputKind
    engine: str
    tracks: int
    minutes: float
    gpu: str
    gpu_name: str
    usd_per_hour: float
    gpu_minutes_per_minute: Span
    gpu_hours: Span
    cost_usd: Span
    source: str


def estimate(
    tracks: int,
    minutes: float,
    gpu: str,
    kind: OutputKind = "music",
    *,
    engine: str | None = None,
    per_minute_gpu_minutes: float | None = None,
    pricing: Pricing | None = None,
) -> Estimate:
    """GPU-hours and cost of ``tracks`` pieces (tracks or videos) of ``minutes`` each on ``gpu``.

    The rate (GPU-minutes per output minute) is ``per_minute_gpu_minutes`` when given (e.g. measured),
    else ``engine``'s from pricing.yaml, else the default engine's for ``kind``.
    """
    pricing = pricing or load_pricing()
    engine = engine or pricing.defaults[kind]
    if per_minute_gpu_minutes is not None:
        rate, source = Span(low=per_minute_gpu_minutes, high=per_minute_gpu_minutes), "given (measured or chosen)"
    elif engine in pricing.engines:
        rate, source = pricing.engines[engine].gpu_minutes_per_minute, pricing.engines[engine].source
    else:
        raise ConfigError(f"no GPU time per minute is configured for engine {engine!r}; known: {', '.join(pricing.engines)}", file=PRICING_FILE, field="engines")
    price = gpu_price(gpu, pricing)
    gpu_hours = rate.times(tracks * minutes / 60)
    return Estimate(
        kind=kind,
        engine=engine,
        tracks=tracks,
        minutes=minutes,
        gpu=gpu,
        gpu_name=price.name,
        usd_per_hour=price.usd_per_hour,
        gpu_minutes_per_minute=rate,
        gpu_hours=gpu_hours,
        cost_usd=gpu_hours.times(price.usd_per_hour),
        source=source,
    )


class TrainingEstimate(BaseModel):
    """What training on ``audio_hours`` of music costs on one GPU."""

    gpu: str
    gpu_name: str
    usd_per_hour: float
    audio_hours: float
    table_hours: Span = Field(description="from the notes' table, scaled by the GPU's speed")
    steps: int | None = None
    steps_per_second: float | None = None
    step_hours: float | None = Field(default=None, description="steps / steps_per_second, where a rate is known")
    gpu_hours: Span
    cost_usd: Span
    source: str


def estimate_training(audio_hours: float, gpu: str, *, steps: int | None = None, steps_per_second: float | None = None, pricing: Pricing | None = None) -> TrainingEstimate:
    """GPU hours and cost of a LoRA training on ``audio_hours`` of audio on ``gpu`` (a ``training.gpus`` key).

    With a steps-per-second rate (given, e.g. measured in a training report, or configured for the GPU)
    and the job's ``steps``, the hours are ``steps / rate``; otherwise the notes' table, scaled by speed.
    """
    pricing = pricing or load_pricing()
    rates = pricing.training
    if rates is None:
        raise ConfigError("no training: section (the fine-tuning notes' table)", file=PRICING_FILE, field="training")
    if gpu not in rates.gpus:
        raise ConfigError(f"unknown training GPU {gpu!r}; priced for training: {', '.join(rates.gpus)}", file=PRICING_FILE, field="training.gpus")
    entry = rates.gpus[gpu]
    price = gpu_price(entry.price, pricing)
    table = rates.reference_hours(audio_hours).times(1 / entry.speed)
    rate = steps_per_second or entry.steps_per_second
    if rate and steps:
        hours = steps / rate / 3600
        gpu_hours, source = Span(low=hours, high=hours), f"{steps} steps at {rate:g} steps/s ({'given' if steps_per_second else 'configured'})"
    else:
        gpu_hours = table
        source = f"the notes' table for the {rates.reference_gpu}" + ("" if entry.speed == 1 else f", / {entry.speed:g} for the {gpu} (assumed speed)")
    return TrainingEstimate(
        gpu=gpu,
        gpu_name=price.name,
        usd_per_hour=price.usd_per_hour,
        audio_hours=audio_hours,
        table_hours=table,
        steps=steps,
        steps_per_second=rate,
        step_hours=gpu_hours.low if rate and steps else None,
        gpu_hours=gpu_hours,
        cost_usd=gpu_hours.times(price.usd_per_hour),
        source=source,
    )


def rate_from_gpu_seconds(gpu_seconds: Iterable[float], output_minutes: float) -> float:
    """Measured GPU-minutes per output minute: the steps' GPU-seconds over ``output_minutes`` of output."""
    if output_minutes <= 0:
        raise ValueError("output_minutes must be positive")
    return sum(gpu_seconds) / 60 / output_minutes
