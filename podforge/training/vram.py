"""How much GPU memory a LoRA training job needs: weights, LoRA optimizer state, activations, logits.

An estimate, stated with its terms so that a user can see what to change. With ``n`` parameters,
``b`` bytes per value (2 with fp16, else 4), sequence ``s`` (clip seconds x 50 codec frames + the
codebooks' delay), batch ``B``, hidden size ``h``, ``a`` heads, ``L`` layers, ``K`` codebooks of ``V``
codes:

* weights: ``n * b`` (the whole model: decoder, T5 text encoder, EnCodec);
* LoRA: trainable parameters x 16 bytes (fp32 weight, gradient, two Adam moments);
* activations per layer (Korthikanti et al., 2022, "Reducing Activation Recomputation"): ``34 s B h``
  values of ``b / 2`` units plus ``5 a s^2 B`` attention values; with gradient checkpointing only each
  layer's input (``2 s B h``) is kept, plus one layer's full activations during recomputation;
* logits: ``B K s V`` x 4 bytes x 3 (logits, softmax, gradient);
* the CUDA context (0.6 GB), and 15% for fragmentation.

For the released models the decoder's shape comes from their configurations; a local folder is read.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from podforge.engines.musicgen import model_location
from podforge.training.settings import TrainingSettings

GB = 1e9
FRAME_RATE = 50
CUDA_CONTEXT_GB = 0.6
FRAGMENTATION = 1.15
TEXT_ENCODER_PARAMS = 110e6  # T5-base encoder, shared by every MusicGen size
AUDIO_ENCODER_PARAMS = 59e6  # EnCodec 32 kHz


class DecoderShape(BaseModel):
    hidden: int
    layers: int
    heads: int
    ffn: int
    codebooks: int = 4
    vocab: int = 2048

    @property
    def parameters(self) -> float:
        per_layer = 8 * self.hidden**2 + 2 * self.hidden * self.ffn  # self- and cross-attention, feed-forward
        return self.layers * per_layer + 2 * self.codebooks * self.vocab * self.hidden


RELEASED = {
    "small": DecoderShape(hidden=1024, layers=24, heads=16, ffn=4096),
    "medium": DecoderShape(hidden=1536, layers=48, heads=24, ffn=6144),
    "large": DecoderShape(hidden=2048, layers=48, heads=32, ffn=8192),
    "melody": DecoderShape(hidden=1536, layers=48, heads=24, ffn=6144),
}


class VramNeed(BaseModel):
    base: str
    total_gb: float
    weights_gb: float
    lora_gb: float
    activations_gb: float
    logits_gb: float
    trainable_parameters: int
    sequence: int

    def line(self) -> str:
        return (
            f"{self.total_gb:.1f} GB (weights {self.weights_gb:.1f}, activations {self.activations_gb:.1f}, logits {self.logits_gb:.2f}, "
            f"LoRA {self.lora_gb:.2f}, + {CUDA_CONTEXT_GB} GB CUDA context and {FRAGMENTATION - 1:.0%} headroom)"
        )


def decoder_shape(base: str) -> tuple[DecoderShape, float]:
    """The decoder's shape and the whole model's parameter count, from a released size or a folder's config."""
    location = model_location(base)
    config_path = Path(location) / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        decoder = config["decoder"]
        shape = DecoderShape(
            hidden=decoder["hidden_size"],
            layers=decoder["num_hidden_layers"],
            heads=decoder["num_attention_heads"],
            ffn=decoder["ffn_dim"],
            codebooks=decoder.get("num_codebooks", 4),
            vocab=decoder.get("vocab_size", 2048),
        )
        weights = sum(p.stat().st_size for p in Path(location).glob("*.safetensors"))
        total = weights / 4 if weights else shape.parameters  # save_pretrained writes fp32
        return shape, total
    size = next((size for size in RELEASED if base.endswith(f"musicgen-{size}")), "small")
    shape = RELEASED[size]
    return shape, shape.parameters + TEXT_ENCODER_PARAMS + AUDIO_ENCODER_PARAMS


def vram_need(settings: TrainingSettings) -> VramNeed:
    shape, parameters = decoder_shape(settings.base)
    fp16 = settings.optim.fp16
    value_bytes = 2 if fp16 else 4
    batch = settings.optim.batch_size
    s = round(settings.prepare.max_clip_s * FRAME_RATE) + shape.codebooks - 1
    h, a, layers = shape.hidden, shape.heads, shape.layers
    modules = len(settings.lora.target_modules)
    trainable = layers * modules * settings.lora.rank * 2 * h  # each targeted h x h projection gets A (r x h) and B (h x r)
    full_layer = (34 * s * batch * h * value_bytes / 2) + 5 * a * s * s * batch * value_bytes / 2
    if settings.optim.gradient_checkpointing:
        activations = layers * 2 * s * batch * h * value_bytes / 2 + full_layer
    else:
        activations = layers * full_layer
    logits = batch * shape.codebooks * s * shape.vocab * 4 * 3
    weights = parameters * value_bytes
    lora = trainable * 16
    total = (weights + lora + activations + logits) / GB + CUDA_CONTEXT_GB
    return VramNeed(
        base=settings.base,
        total_gb=round(total * FRAGMENTATION, 2),
        weights_gb=round(weights / GB, 2),
        lora_gb=round(lora / GB, 3),
        activations_gb=round(activations / GB, 2),
        logits_gb=round(logits / GB, 3),
        trainable_parameters=trainable,
        sequence=s,
    )


def fit_findings(settings: TrainingSettings, gpus: list) -> list[tuple[str, str]]:
    """``(level, message)`` for the doctor: does the configured training job fit each GPU's memory?"""
    need = vram_need(settings)
    job = (
        f"the configured LoRA training ({settings.base}, rank {settings.lora.rank}, batch {settings.optim.batch_size}, "
        f"{'fp16' if settings.optim.fp16 else 'fp32'}, checkpointing {'on' if settings.optim.gradient_checkpointing else 'off'}, "
        f"{settings.prepare.max_clip_s:g} s clips) needs about {need.line()}"
    )
    if not gpus:
        return [("info", f"{job}; no GPU here, so `podforge train-music` runs on the CPU (slowly)")]
    findings = []
    for gpu in gpus:
        have = gpu.memory_total_bytes / GB
        if need.total_gb > have:
            hints = [hint for hint, off in (("gradient checkpointing", not settings.optim.gradient_checkpointing), ("fp16", not settings.optim.fp16)) if off]
            hints += ["batch_size 1 with more gradient_accumulation"] if settings.optim.batch_size > 1 else []
            hints += ["shorter max_clip_s", "a smaller base model"]
            findings.append(("warn", f"{job}: more than GPU {gpu.index} ({gpu.name}, {have:.0f} GB) has; try {', '.join(hints)}"))
        else:
            findings.append(("ok", f"{job}: fits GPU {gpu.index} ({gpu.name}, {have:.0f} GB)"))
    return findings
