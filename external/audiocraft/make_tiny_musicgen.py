"""Build a tiny, randomly initialised MusicGen with audiocraft's own builders and save it the way audiocraft's
released models are saved, so ``MusicGen.get_pretrained(FOLDER)`` loads it (run in the ``audiocraft`` env).

    python make_tiny_musicgen.py OUT_DIR

The layout of ``musicgen_base_32khz`` at a tiny scale: a 32 kHz mono EnCodec (SEANet, 50 frames/s, 4 residual
codebooks) and a transformer LM over the 4 codebooks with the delay pattern, conditioned by cross-attention
on the description. The description goes through a lookup-table conditioner with the ``noop`` tokenizer
(the ``whitespace`` one needs a spaCy model, which would be downloaded) instead of T5. The LM's
``dataset.segment_duration`` is 30 s as in the released models (``MusicGen.max_duration``: its
``__init__`` sets a default stride of 18 s, which must be shorter).

Each file is what audiocraft's loaders read: ``{"xp.cfg": <the config>, "best_state": <state dict>}`` as
``compression_state_dict.bin`` and ``state_dict.bin`` (``audiocraft.models.loaders``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from audiocraft.models import builders

SAMPLE_RATE = 32_000
CODEBOOKS = 4

COMPRESSION = {
    "device": "cpu",
    "compression_model": "encodec",
    "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": SAMPLE_RATE, "channels": 1, "causal": False, "renormalize": False},
    # hop = 8 * 5 * 4 * 4 = 640 samples: 50 frames per second at 32 kHz
    "seanet": {"dimension": 16, "channels": 1, "causal": False, "n_filters": 2, "n_residual_layers": 1, "ratios": [8, 5, 4, 4], "lstm": 0, "encoder": {}, "decoder": {}},
    "rvq": {"n_q": CODEBOOKS, "bins": 64, "q_dropout": False, "decay": 0.99, "kmeans_init": False, "kmeans_iters": 0, "threshold_ema_dead_code": 2},
}

LANGUAGE_MODEL = {
    "device": "cpu",
    "dtype": "float32",
    "lm_model": "transformer_lm",
    "dataset": {"segment_duration": 30.0, "sample_rate": SAMPLE_RATE, "channels": 1},
    "codebooks_pattern": {"modeling": "delay", "delay": {"delays": list(range(CODEBOOKS)), "flatten_first": 0, "empty_initial": 0}},
    "transformer_lm": {
        "n_q": CODEBOOKS, "card": 64, "dim": 32, "num_heads": 2, "num_layers": 2, "hidden_scale": 2, "dropout": 0.0,
        "emb_lr": None, "activation": "gelu", "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False,
        "past_context": None, "causal": True, "custom": False, "memory_efficient": False, "attention_as_float32": False,
        "layer_scale": None, "positional_embedding": "sin", "xpos": False, "checkpointing": "none", "weight_init": "gaussian",
        "depthwise_init": "current", "zero_bias_init": True, "norm": "layer_norm", "cross_attention": False,
        "qk_layer_norm": False, "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False,
    },
    "attribute_dropout": {},
    "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": 3.0},
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
    "conditioners": {"description": {"model": "lut", "lut": {"n_bins": 256, "dim": 16, "tokenizer": "noop"}}},
}


def main(out_dir: Path) -> None:
    torch.manual_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    compression_cfg = OmegaConf.create(COMPRESSION)
    compression = builders.get_compression_model(compression_cfg)
    torch.save({"xp.cfg": OmegaConf.to_container(compression_cfg), "best_state": compression.state_dict()}, out_dir / "compression_state_dict.bin")
    lm_cfg = OmegaConf.create(LANGUAGE_MODEL)
    lm = builders.get_lm_model(lm_cfg)
    torch.save({"xp.cfg": OmegaConf.to_container(lm_cfg), "best_state": lm.state_dict()}, out_dir / "state_dict.bin")
    parameters = sum(p.numel() for p in compression.parameters()) + sum(p.numel() for p in lm.parameters())
    print(f"tiny MusicGen (audiocraft): {parameters} parameters, frame rate {compression.frame_rate} Hz, saved in {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
