"""Build a tiny, randomly initialised MusicGen and save it like a Hub checkpoint (for tests).

Run with the ``musicgen`` environment's Python: ``python make_tiny_musicgen.py OUT_DIR``. The model keeps
the real models' audio format (32 kHz mono, 50 codec frames per second, 4 codebooks) so the engine's
duration arithmetic is exercised as on ``facebook/musicgen-small``; everything else is as small as the
architecture allows. Its text tokenizer is a Unigram model trained here with ``tokenizers``, because no
pretrained tokenizer can be downloaded. The output is noise; the loading and generation code is real.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
    T5Config,
    T5TokenizerFast,
)

SAMPLING_RATE = 32_000
CODEBOOK_SIZE = 64
NUM_CODEBOOKS = 4
# hop = 8 * 5 * 4 * 4 = 640 samples: 50 frames per second at 32 kHz, as in the released models
UPSAMPLING_RATIOS = [8, 5, 4, 4]
# num_quantizers = 1000 * bandwidth // (frame_rate * log2(codebook_size)) = 1200 // 300 = 4 codebooks
TARGET_BANDWIDTH_KBPS = 1.2
CORPUS = [
    "warm calm lo-fi podcast bed with soft piano and vinyl crackle",
    "upbeat electronic intro with bright synth and punchy drums",
    "ambient pad, slow tempo, gentle guitar, relaxing evening mood",
    "jazz trio with brushed drums, walking bass and mellow keys",
    "cinematic strings, hopeful, rising, orchestral news theme",
]


def train_tokenizer() -> T5TokenizerFast:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return T5TokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)


def build_model(vocab_size: int) -> MusicgenForConditionalGeneration:
    text_encoder = T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2, relative_attention_num_buckets=8)
    audio_encoder = EncodecConfig(
        sampling_rate=SAMPLING_RATE,
        target_bandwidths=[TARGET_BANDWIDTH_KBPS],
        codebook_size=CODEBOOK_SIZE,
        upsampling_ratios=UPSAMPLING_RATIOS,
        hidden_size=16,
        num_filters=4,
        num_lstm_layers=1,
        num_residual_layers=1,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=CODEBOOK_SIZE,
        num_codebooks=NUM_CODEBOOKS,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
        pad_token_id=CODEBOOK_SIZE,
        bos_token_id=CODEBOOK_SIZE,
    )
    config = MusicgenConfig(text_encoder=text_encoder.to_dict(), audio_encoder=audio_encoder.to_dict(), decoder=decoder.to_dict())
    if (audio_encoder.frame_rate, audio_encoder.num_quantizers) != (50, NUM_CODEBOOKS):
        raise ValueError(f"the tiny codec has {audio_encoder.frame_rate} frames/s and {audio_encoder.num_quantizers} codebooks; expected 50 and {NUM_CODEBOOKS}")
    model = MusicgenForConditionalGeneration(config)
    # EnCodec's codebooks start as zeros (training fills them), which would make every code decode to the
    # same sound; random codebooks make the audio depend on the generated codes, as in a trained model
    for layer in model.audio_encoder.quantizer.layers:
        layer.codebook.embed.normal_()
    generation = model.generation_config
    generation.decoder_start_token_id = CODEBOOK_SIZE
    generation.pad_token_id = CODEBOOK_SIZE
    generation.do_sample = True
    generation.guidance_scale = 3.0
    generation.max_length = 256
    return model


def main(out_dir: Path) -> None:
    torch.manual_seed(0)
    tokenizer = train_tokenizer()
    processor = MusicgenProcessor(feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE), tokenizer=tokenizer)
    model = build_model(len(tokenizer))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    print(f"tiny MusicGen ({sum(p.numel() for p in model.parameters())} parameters) saved to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_musicgen.py OUT_DIR")
    main(Path(sys.argv[1]))
