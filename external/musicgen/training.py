"""LoRA fine-tuning of MusicGen's decoder, and the dataset work that needs this environment's libraries.

Used by ``train_runner.py`` (jobs ``musicgen-label``, ``musicgen-encode`` and ``musicgen-train``):

* :func:`estimate_labels` — tempo, key and loudness of a clip with librosa.
* :func:`encode_clips` — each clip to EnCodec codes (``int16`` ``.npy``, shape ``(codebooks, frames)``).
* :class:`Trainer` — a peft LoRA on the decoder's attention projections, trained on cached codes with
  MusicGen's delay pattern, text conditioning (with classifier-free-guidance dropout), gradient
  accumulation, a warm-up schedule, fp16 autocast and a gradient scaler on CUDA, gradient checkpointing,
  atomic checkpoints every N optimizer steps (resumed after a crash), validation loss per epoch and early
  stopping. Progress goes to ``progress.jsonl`` (one JSON object per line) beside the checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import torch

KEY_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
# Krumhansl-Kessler key profiles (probe-tone ratings), C major and C minor
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
TEMPO_HOP = 256
KILL_AFTER_CHECKPOINT_ENV = "PODFORGE_TRAIN_KILL_AFTER_CHECKPOINT"
"""Fault injection for tests: SIGKILL this process right after the checkpoint of that step is on disk."""


# --- labels ---------------------------------------------------------------------------------------------


def estimate_labels(wav_path: str) -> dict:
    """``{"bpm", "key", "loudness_dbfs", "peak_dbfs", "key_confidence"}`` of a mono clip."""
    import librosa
    import soundfile

    audio, rate = soundfile.read(wav_path, dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    rms = float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    key, confidence = estimate_key(librosa.feature.chroma_stft(y=audio, sr=rate).mean(axis=1))
    return {
        "bpm": estimate_bpm(audio, rate),
        "key": key,
        "key_confidence": round(confidence, 3),
        "loudness_dbfs": round(20 * math.log10(rms), 2) if rms > 0 else None,
        "peak_dbfs": round(20 * math.log10(peak), 2) if peak > 0 else None,
    }


def estimate_bpm(audio: np.ndarray, rate: int) -> float | None:
    """librosa's beat tracker, refined: the slope of a line fitted through the beat times.

    The tracker's own tempo is quantised to whole onset frames (about ±2 BPM at 120 BPM); the fitted
    inter-beat interval is not.
    """
    import librosa

    tempo, beats = librosa.beat.beat_track(y=audio, sr=rate, hop_length=TEMPO_HOP, units="time")
    tempo = float(np.atleast_1d(tempo)[0])
    if len(beats) >= 4:
        interval = float(np.polyfit(np.arange(len(beats)), beats, 1)[0])
        if interval > 0:
            return round(60.0 / interval, 2)
    return round(tempo, 2) if tempo > 0 else None


def estimate_key(chroma: np.ndarray) -> tuple[str, float]:
    """The best-correlated major or minor key for a mean chroma vector, and that correlation."""
    best = ("C major", -2.0)
    for shift in range(12):
        for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            rotated = np.roll(profile, shift)
            if np.std(chroma) == 0:
                continue
            correlation = float(np.corrcoef(chroma, rotated)[0, 1])
            if correlation > best[1]:
                best = (f"{KEY_NAMES[shift]} {mode}", correlation)
    return best if best[1] > -2.0 else ("C major", 0.0)


# --- model loading --------------------------------------------------------------------------------------


def load_musicgen(name: str, device: str, fp16: bool):
    """The full MusicGen model and its processor (the runner's loader, kept in one place)."""
    from runner import load_model

    return load_model(name, device, fp16)


# --- encoding -------------------------------------------------------------------------------------------


def encode_clips(model, device: str, clips: list[dict]) -> list[dict]:
    """Encode each ``{"wav", "codes"}`` clip with the model's EnCodec; write ``codes`` atomically."""
    import soundfile

    encoded = []
    for clip in clips:
        audio, rate = soundfile.read(clip["wav"], dtype="float32", always_2d=False)
        expected = int(model.config.audio_encoder.sampling_rate)
        if rate != expected:
            raise ValueError(f"{clip['wav']} is {rate} Hz; the model's codec expects {expected} Hz")
        values = torch.from_numpy(audio).to(device, model.audio_encoder.dtype)[None, None, :]
        with torch.inference_mode():
            codes = model.audio_encoder.encode(values).audio_codes  # (chunks=1, batch=1, codebooks, frames)
        array = codes[0, 0].cpu().numpy().astype(np.int16)
        save_npy_atomic(Path(clip["codes"]), array)
        encoded.append({"codes": clip["codes"], "frames": int(array.shape[1]), "codebooks": int(array.shape[0])})
        print(f"encode: {Path(clip['wav']).name}: {array.shape[1]} frames x {array.shape[0]} codebooks", flush=True)
    return encoded


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


# --- training -------------------------------------------------------------------------------------------


def delayed(codes: torch.Tensor, pad: int) -> torch.Tensor:
    """MusicGen's delay pattern: codebook k shifted right by k steps, padded with ``pad``: (K, T + K - 1)."""
    books, frames = codes.shape
    out = torch.full((books, frames + books - 1), pad, dtype=torch.long)
    for book in range(books):
        out[book, book : book + frames] = codes[book]
    return out


class Batch:
    """Labels ``(B, S, K)`` (delay-patterned; -100 beyond each clip), the decoder mask and the texts."""

    def __init__(self, clips: list[dict], pad: int):
        patterned = [delayed(torch.from_numpy(np.load(clip["codes"]).astype(np.int64)), pad) for clip in clips]
        length = max(p.shape[1] for p in patterned)
        books = patterned[0].shape[0]
        self.labels = torch.full((len(clips), length, books), -100, dtype=torch.long)
        self.mask = torch.zeros((len(clips), length), dtype=torch.long)
        for row, pattern in enumerate(patterned):
            self.labels[row, : pattern.shape[1]] = pattern.T
            self.mask[row, : pattern.shape[1]] = 1
        self.texts = [clip["description"] for clip in clips]
        self.tokens = int(self.mask.sum())

    def decoder_inputs(self, start: int, pad: int) -> torch.Tensor:
        """The labels shifted right by one step behind the start token: ``(B * K, S)``, as generate() feeds them."""
        codes = self.labels.transpose(1, 2)  # (B, K, S)
        shifted = torch.full_like(codes, pad)
        shifted[..., 1:] = codes[..., :-1]
        shifted[..., 0] = start
        shifted = shifted.masked_fill(shifted == -100, pad)
        return shifted.reshape(-1, shifted.shape[-1])


class Trainer:
    """One LoRA training run in ``run_dir``: resumable from its last checkpoint."""

    def __init__(self, model, processor, device: str, request: dict):
        self.model = model
        self.processor = processor
        self.device = device
        self.settings = request["settings"]
        self.run_dir = Path(request["run_dir"])
        self.checkpoints = self.run_dir / "checkpoints"
        self.progress_path = self.run_dir / "progress.jsonl"
        self.train_clips = [c for c in request["clips"] if c["split"] == "train"]
        self.val_clips = [c for c in request["clips"] if c["split"] == "validation"]
        if not self.train_clips:
            raise ValueError("no training clips: the dataset's train split is empty")
        s = self.settings
        self.batch_size = int(s["batch_size"])
        self.accumulation = int(s["gradient_accumulation"])
        self.epochs = int(s["epochs"])
        self.batches_per_epoch = math.ceil(len(self.train_clips) / self.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.accumulation)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.fp16 = device == "cuda" and bool(s["fp16"])
        self.pad = int(model.config.decoder.pad_token_id)
        start = model.generation_config.decoder_start_token_id
        self.start = int(start if start is not None else model.config.decoder.bos_token_id)
        self._kill_after = int(os.environ.get(KILL_AFTER_CHECKPOINT_ENV, "0") or 0)
        self._prepare_model()
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=float(s["learning_rate"]), weight_decay=float(s["weight_decay"]))
        from transformers import get_scheduler

        self.scheduler = get_scheduler(s["lr_schedule"], self.optimizer, num_warmup_steps=int(s["warmup_steps"]), num_training_steps=self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.fp16)
        self.state = {"step": 0, "epoch": 0, "history": [], "best_val": None, "bad_epochs": 0, "stopped_early": False, "seconds": 0.0}

    def _prepare_model(self) -> None:
        from peft import LoraConfig, get_peft_model

        s = self.settings
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        if s["gradient_checkpointing"]:
            self.model.decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        config = LoraConfig(r=int(s["lora_rank"]), lora_alpha=float(s["lora_alpha"]), lora_dropout=float(s["lora_dropout"]), target_modules=list(s["target_modules"]), bias="none")
        torch.manual_seed(int(s["seed"]))
        self.model.decoder = get_peft_model(self.model.decoder, config)
        self.model.text_encoder.eval()
        self.model.audio_encoder.eval()
        self.model.decoder.train()
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        self.trainable_parameters = trainable
        print(f"train: LoRA r={s['lora_rank']} alpha={s['lora_alpha']} on {s['target_modules']}: {trainable:,} trainable of {total:,} parameters", flush=True)

    # -- progress and checkpoints --

    def log(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, "t": round(time.time(), 3), **fields})
        with open(self.progress_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def latest_checkpoint(self) -> Path | None:
        done = sorted(p for p in self.checkpoints.glob("step-*") if (p / "trainer_state.pt").is_file())
        return done[-1] if done else None

    def save_checkpoint(self) -> Path:
        """Adapter, optimizer, scheduler, scaler and RNG states in a temporary folder, renamed into place."""
        step = self.state["step"]
        final = self.checkpoints / f"step-{step:08d}"
        tmp = self.checkpoints / f".tmp-step-{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.decoder.save_pretrained(str(tmp))
        torch.save(
            {
                "state": self.state,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            },
            tmp / "trainer_state.pt",
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(p for p in self.checkpoints.glob("step-*") if p != final)[: -max(0, int(self.settings["keep_checkpoints"]) - 1) or None]:
            shutil.rmtree(old, ignore_errors=True)
        self.log("checkpoint", step=step, path=str(final))
        print(f"train: checkpoint at step {step}", flush=True)
        if self._kill_after and step == self._kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return final

    def resume(self) -> int:
        """Load the newest complete checkpoint, if any; the step it was taken at (0: a fresh start)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        latest = self.latest_checkpoint()
        if latest is None:
            return 0
        saved = torch.load(latest / "trainer_state.pt", map_location="cpu", weights_only=False)
        set_peft_model_state_dict(self.model.decoder, load_file(str(latest / "adapter_model.safetensors"), device=self.device))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"]["torch"])
        np.random.set_state(saved["rng"]["numpy"])
        random.setstate(saved["rng"]["python"])
        self.state = saved["state"]
        self.log("resume", step=self.state["step"], epoch=self.state["epoch"])
        print(f"train: resuming from the checkpoint at step {self.state['step']} (epoch {self.state['epoch'] + 1})", flush=True)
        return int(self.state["step"])

    # -- the loop --

    def epoch_order(self, epoch: int) -> list[dict]:
        """The training clips in this epoch's order: a permutation fixed by the seed and the epoch number."""
        generator = torch.Generator().manual_seed(int(self.settings["seed"]) * 1000 + epoch)
        return [self.train_clips[i] for i in torch.randperm(len(self.train_clips), generator=generator).tolist()]

    def loss(self, batch: Batch, *, cfg_dropout: float) -> torch.Tensor:
        text = self.processor(text=batch.texts, padding=True, return_tensors="pt").to(self.device)
        attention = text["attention_mask"]
        if cfg_dropout > 0:
            # classifier-free guidance: the unconditional branch sees zeroed text states, as generate() gives it
            keep = (torch.rand(attention.shape[0]) >= cfg_dropout).to(self.device, attention.dtype)
            attention = attention * keep[:, None]
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            output = self.model(
                input_ids=text["input_ids"],
                attention_mask=attention,
                decoder_input_ids=batch.decoder_inputs(self.start, self.pad).to(self.device),
                decoder_attention_mask=batch.mask.to(self.device),
                labels=batch.labels.to(self.device),
            )
        return output.loss

    def validation_loss(self) -> float | None:
        if not self.val_clips:
            return None
        self.model.decoder.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.val_clips), self.batch_size):
                batch = Batch(self.val_clips[start : start + self.batch_size], self.pad)
                total += float(self.loss(batch, cfg_dropout=0.0)) * batch.tokens
                tokens += batch.tokens
        self.model.decoder.train()
        return total / max(tokens, 1)

    def train(self) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed_from = self.resume()
        start_step = self.state["step"]
        self.log("start", step=start_step, total=self.total_steps, epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, resumed_from=resumed_from, device=self.device, fp16=self.fp16)
        every = int(self.settings["checkpoint_every"])
        began = time.perf_counter()
        while self.state["epoch"] < self.epochs and not self.state["stopped_early"]:
            epoch = self.state["epoch"]
            order = self.epoch_order(epoch)
            done_in_epoch = self.state["step"] - epoch * self.steps_per_epoch
            epoch_losses = list(self.state.get("epoch_losses", [])) if done_in_epoch else []
            for step_in_epoch in range(done_in_epoch, self.steps_per_epoch):
                first = step_in_epoch * self.accumulation
                batches = [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(first, min(first + self.accumulation, self.batches_per_epoch))]
                epoch_losses.append(self.optimizer_step(batches))
                self.state["epoch_losses"] = epoch_losses
                if self.state["step"] % every == 0 and self.state["step"] < (epoch + 1) * self.steps_per_epoch:
                    self.state["seconds"] += time.perf_counter() - began
                    began = time.perf_counter()
                    self.save_checkpoint()
            self.end_epoch(epoch, epoch_losses)
            self.state["seconds"] += time.perf_counter() - began
            began = time.perf_counter()
            self.save_checkpoint()
        self.save_adapter(self.run_dir / "final")
        result = {
            "steps": self.state["step"],
            "total_steps": self.total_steps,
            "steps_this_run": self.state["step"] - start_step,
            "resumed_from_step": resumed_from,
            "epochs_done": self.state["epoch"],
            "stopped_early": self.state["stopped_early"],
            "history": self.state["history"],
            "best_val": self.state["best_val"],
            "train_seconds": round(self.state["seconds"], 3),
            "trainable_parameters": self.trainable_parameters,
            "adapter": str(self.run_dir / ("best" if (self.run_dir / "best").is_dir() else "final")),
        }
        self.log("done", **{k: v for k, v in result.items() if k != "history"})
        return result

    def optimizer_step(self, batches: list[list[dict]]) -> float:
        """One optimizer step over ``batches`` (gradient accumulation); the mean loss per token."""
        started = time.perf_counter()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        loaded = [Batch(clips, self.pad) for clips in batches]
        tokens = sum(b.tokens for b in loaded)
        total = 0.0
        for batch in loaded:
            loss = self.loss(batch, cfg_dropout=float(self.settings["cfg_dropout"]))
            self.scaler.scale(loss * batch.tokens / tokens).backward()
            total += float(loss.detach()) * batch.tokens
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], float(self.settings["max_grad_norm"]))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state["step"] += 1
        mean = total / max(tokens, 1)
        memory_mb = torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.log(
            "step",
            step=self.state["step"],
            total=self.total_steps,
            epoch=self.state["epoch"] + 1,
            loss=round(mean, 5),
            lr=self.scheduler.get_last_lr()[0],
            seconds=round(time.perf_counter() - started, 4),
            memory_mb=round(memory_mb, 1),
            memory_kind="cuda_peak_allocated" if self.device == "cuda" else "process_peak_rss",
        )
        return mean

    def end_epoch(self, epoch: int, losses: list[float]) -> None:
        """Validation loss, history, the best adapter so far, and early stopping."""
        val = self.validation_loss()
        train = float(np.mean(losses)) if losses else None
        self.state["history"].append({"epoch": epoch + 1, "step": self.state["step"], "train_loss": train, "val_loss": val})
        self.state["epoch"] = epoch + 1
        self.state["epoch_losses"] = []
        patience = int(self.settings["early_stopping_patience"])
        if val is not None:
            best = self.state["best_val"]
            if best is None or val < best - float(self.settings["early_stopping_min_delta"]):
                self.state["best_val"] = val
                self.state["bad_epochs"] = 0
                self.save_adapter(self.run_dir / "best")
            else:
                self.state["bad_epochs"] += 1
                if patience and self.state["bad_epochs"] >= patience:
                    self.state["stopped_early"] = True
        self.log("epoch", epoch=epoch + 1, step=self.state["step"], train_loss=train, val_loss=val, stopped_early=self.state["stopped_early"])
        print(f"train: epoch {epoch + 1}/{self.epochs}: train loss {train:.4f}" + (f", validation loss {val:.4f}" if val is not None else ""), flush=True)

    def save_adapter(self, final: Path) -> None:
        tmp = final.with_name(f".tmp-{final.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.decoder.save_pretrained(str(tmp))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
