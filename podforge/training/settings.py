"""The ``train_music:`` section of the config (``podforge train-music``): how clips are prepared, the LoRA,
the optimizer, checkpoints and the samples of the report.

Plain pydantic models that import nothing of Podforge, so :mod:`podforge.config` can hold them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrepareSettings(Strict):
    """How source files become clips: 32 kHz mono, 5-30 s, cut at quiet points, bad clips dropped."""

    sample_rate: int = Field(default=32000, description="MusicGen's codec rate")
    min_clip_s: float = Field(default=5.0, gt=0, description="shorter clips are dropped")
    max_clip_s: float = Field(default=30.0, gt=0, description="longer files are cut into clips of at most this")
    cut_search_s: float = Field(default=10.0, gt=0, description="a cut is placed at the quietest point of the last this-many seconds before max_clip_s")
    silence_dbfs: float = Field(default=-50.0, le=0, description="clips quieter than this RMS are dropped as silent")
    clipped_fraction: float = Field(default=0.001, gt=0, le=1, description="clips with more samples than this at full scale are dropped as clipped")
    validation_fraction: float = Field(default=0.15, ge=0, lt=1, description="share of clips held out for validation (whole source files where possible)")

    @model_validator(mode="after")
    def _lengths(self) -> PrepareSettings:
        if self.max_clip_s < self.min_clip_s:
            raise ValueError("max_clip_s must not be below min_clip_s")
        return self


class LoraSettings(Strict):
    """The LoRA of the seed's example: rank 8, alpha 16, on the attention's query and value projections."""

    rank: int = Field(default=8, ge=1, le=256)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)


class OptimSettings(Strict):
    batch_size: int = Field(default=1, ge=1)
    gradient_accumulation: int = Field(default=8, ge=1)
    epochs: int = Field(default=10, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_steps: int = Field(default=20, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    cfg_dropout: float = Field(default=0.1, ge=0, lt=1, description="share of steps trained without the text, so classifier-free guidance keeps working")
    fp16: bool = Field(default=True, description="fp16 weights and autocast with a gradient scaler (CUDA only)")
    gradient_checkpointing: bool = True
    seed: int = 0


class CheckpointSettings(Strict):
    every_steps: int = Field(default=50, ge=1, description="optimizer steps between checkpoints (and one at every epoch end)")
    keep: int = Field(default=2, ge=1)
    early_stopping_patience: int = Field(default=3, ge=0, description="epochs without a better validation loss before stopping (0: never)")
    early_stopping_min_delta: float = Field(default=0.0, ge=0)


class SampleSettings(Strict):
    """Beds generated from the finished adapter for the training report."""

    prompts: list[str] = Field(default_factory=list, description="empty: the descriptions of the first validation (else training) clips")
    count: int = Field(default=2, ge=0)
    duration_s: float = Field(default=10.0, gt=0)
    seed: int = 7
    engine_settings: dict[str, Any] = Field(default_factory=dict, description="extra MusicGen engine settings for the samples (window_s, top_k...)")


class TrainingSettings(Strict):
    base: str = Field(default="facebook/musicgen-small", description="a Hub id in the HF cache, or a save_pretrained folder")
    device: Literal["cuda", "cpu"] = "cuda"
    prepare: PrepareSettings = Field(default_factory=PrepareSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    checkpoints: CheckpointSettings = Field(default_factory=CheckpointSettings)
    samples: SampleSettings = Field(default_factory=SampleSettings)
    price_as: str | None = Field(default=None, description="the pricing.yaml GPU the training's GPU-seconds are priced on (default: gpu.price_as)")
    timeout_s: float = Field(default=7 * 24 * 3600, gt=0)

    def runner_settings(self) -> dict[str, Any]:
        """What the training runner's Trainer reads (flat, as in ``external/musicgen/training.py``)."""
        o, c, lora = self.optim, self.checkpoints, self.lora
        return {
            "batch_size": o.batch_size,
            "gradient_accumulation": o.gradient_accumulation,
            "epochs": o.epochs,
            "learning_rate": o.learning_rate,
            "weight_decay": o.weight_decay,
            "lr_schedule": o.lr_schedule,
            "warmup_steps": o.warmup_steps,
            "max_grad_norm": o.max_grad_norm,
            "cfg_dropout": o.cfg_dropout,
            "fp16": o.fp16,
            "gradient_checkpointing": o.gradient_checkpointing,
            "seed": o.seed,
            "lora_rank": lora.rank,
            "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout,
            "target_modules": lora.target_modules,
            "checkpoint_every": c.every_steps,
            "keep_checkpoints": c.keep,
            "early_stopping_patience": c.early_stopping_patience,
            "early_stopping_min_delta": c.early_stopping_min_delta,
        }
