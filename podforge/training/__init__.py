"""LoRA fine-tuning of MusicGen on a folder of music: a show's own sound (the ``train-music`` flow).

Main-environment work lives here (ingest, prepare, labels, the dataset manifest, VRAM, publishing);
what needs torch, peft or librosa runs in the ``musicgen`` environment (``external/musicgen/training.py``).
"""
