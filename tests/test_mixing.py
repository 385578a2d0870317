"""Mix and master on synthetic signals: the bed is ducked under speech, loudness hits the target."""

from __future__ import annotations

import numpy as np
import pytest

from podforge.config import MixSettings
from podforge.media.audio import read_mono, write_wav
from podforge.media.ffmpeg import probe
from podforge.media.mixing import mix_and_master

RATE = 48000


def band_level_db(samples: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    return 10 * np.log10(spectrum[(freqs >= low) & (freqs <= high)].sum() + 1e-12)


@pytest.mark.parametrize(("speech_level", "bed_level"), [(0.5, 0.5), (0.05, 0.95), (0.9, 0.02)], ids=["even", "loud-bed", "quiet-bed"])
def test_bed_is_ducked_under_speech_and_master_is_normalised(tmp_path, speech_level, bed_level):
    """Stems arrive at any level (engines differ); the master still lands on target, the bed under the speech."""
    t = np.arange(int(6.0 * RATE)) / RATE
    speech = speech_level * np.sin(2 * np.pi * 1000 * t) * (t > 1.0) * (t < 5.0)  # "speech" from 1 s to 5 s of the dialogue
    bed_t = np.arange(int(2.0 * RATE)) / RATE
    bed = bed_level * np.sin(2 * np.pi * 110 * bed_t)  # a 2 s loop, looped under the whole episode
    dialogue_wav = write_wav(tmp_path / "dialogue.wav", speech.astype(np.float32), RATE)
    bed_wav = write_wav(tmp_path / "bed.wav", np.stack([bed, bed], axis=1).astype(np.float32), RATE)
    mix = MixSettings(intro_s=3.0, outro_s=3.0)

    master = mix_and_master(dialogue_wav, 6.0, bed_wav, mix.levels(), mix.timing(), tmp_path)

    assert abs(master.duration_s - 12.0) < 1e-6
    assert abs(probe(master.wav).duration_s - 12.0) < 0.05
    assert abs(master.loudness.integrated_lufs - mix.target_lufs) <= 0.5
    assert master.loudness.true_peak_dbtp <= -1.0
    audio = read_mono(master.wav, RATE)
    intro = audio[int(1.5 * RATE) : int(2.5 * RATE)]  # bed alone (after its fade-in)
    under_speech = audio[int(5.5 * RATE) : int(6.5 * RATE)]  # dialogue second 2.5..3.5: speech present
    ducking_db = band_level_db(intro, 90, 130) - band_level_db(under_speech, 90, 130)
    assert ducking_db > 6.0, f"bed only {ducking_db:.1f} dB lower under speech"
    assert band_level_db(under_speech, 950, 1050) > band_level_db(under_speech, 90, 130) + 10, "speech sits well above the bed"
    assert not (tmp_path / "premaster.wav").exists()
