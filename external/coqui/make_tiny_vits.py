"""Build a tiny, randomly initialised Coqui VITS voice and save it like a trained one (for tests).

Run with the ``coqui`` environment's Python: ``python make_tiny_vits.py OUT_DIR``. It writes
``OUT_DIR/model.pth`` (a checkpoint in the trainer's format, ``{"model": state_dict, "config": ...}``)
and ``OUT_DIR/config.json``, which ``TTS(model_path=..., config_path=...)`` loads like any released
voice. Graphemes are used instead of phonemes so no espeak is needed. The output is noise; the loading and
synthesis code is real.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from TTS.config.shared_configs import BaseAudioConfig
from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
from TTS.tts.models.vits import Vits

SAMPLE_RATE = 16_000
HOP_LENGTH = 256
# the waveform decoder upsamples one spectrogram frame to HOP_LENGTH samples: 8 * 8 * 2 * 2 = 256
UPSAMPLE_RATES = [8, 8, 2, 2]


def tiny_config() -> VitsConfig:
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=UPSAMPLE_RATES,
        upsample_initial_channel_decoder=16,
        upsample_kernel_sizes_decoder=[16, 16, 4, 4],
        use_sdp=False,
        init_discriminator=False,
    )
    audio = BaseAudioConfig(sample_rate=SAMPLE_RATE, hop_length=HOP_LENGTH, win_length=1024, fft_size=1024, num_mels=80)
    return VitsConfig(model_args=args, audio=audio, use_phonemes=False, phoneme_language="en", text_cleaner="english_cleaners", add_blank=True)


def main(out_dir: Path) -> None:
    torch.manual_seed(0)
    config = tiny_config()
    model = Vits(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_json(str(out_dir / "config.json"))
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out_dir / "model.pth")
    print(f"tiny VITS ({sum(p.numel() for p in model.parameters())} parameters, {SAMPLE_RATE} Hz) saved to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_vits.py OUT_DIR")
    main(Path(sys.argv[1]))
