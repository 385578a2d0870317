"""The procedural music bed, measured on the WAV it writes: length, tempo, drums, spectrum, loop seam."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
import soundfile

from podforge.config import load_config
from podforge.engines.base import MusicRequest, MusicResult
from podforge.engines.procedural_music import ProceduralMusicEngine, parse_chord, parse_prompt
from podforge.engines.registry import load_engine, resolve_engine
from podforge.errors import EngineError
from podforge.media.ffmpeg import run_ffmpeg
from podforge.media.synth import LoopBuffer, apply_filter, convolve_circular, filter_loop, lowpass, pan, reverb_impulse

DEMO_PROMPT = "calm, warm lo-fi with soft drums, 84 bpm"
UPBEAT_PROMPT = "upbeat energetic electronic 120bpm"
AMBIENT_PROMPT = "ambient pad, no drums"
DARK_PROMPT = "dark tense serious"
RATE = 48000
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)


@dataclass
class Bed:
    """A rendered bed as read back from its WAV, with its spectrum computed once (loop lengths may be prime)."""

    audio: np.ndarray
    rate: int
    subtype: str
    result: MusicResult
    cpu_s: float

    @cached_property
    def spectrum(self) -> np.ndarray:
        return np.fft.rfft(self.audio.mean(axis=1))

    @cached_property
    def freqs(self) -> np.ndarray:
        return np.fft.rfftfreq(len(self.audio), 1 / self.rate)


def render(workdir: Path, prompt: str, **fields) -> Bed:
    started = time.process_time()
    result = ProceduralMusicEngine().run(MusicRequest(prompt=prompt, **fields), workdir)
    cpu_s = time.process_time() - started
    audio, rate = soundfile.read(result.wav, always_2d=True)
    return Bed(audio=audio, rate=rate, subtype=soundfile.info(result.wav).subtype, result=result, cpu_s=cpu_s)


@pytest.fixture(scope="module")
def beds(tmp_path_factory) -> dict[str, Bed]:
    root = tmp_path_factory.mktemp("beds")
    prompts = {"demo": DEMO_PROMPT, "upbeat": UPBEAT_PROMPT, "ambient": AMBIENT_PROMPT, "dark": DARK_PROMPT}
    return {name: render(root / name, prompt, seed=7) for name, prompt in prompts.items()}


# --- measurements ------------------------------------------------------------------------------------


def band_fraction(bed: Bed, low_hz: float, high_hz: float) -> float:
    power = np.abs(bed.spectrum) ** 2
    return float(power[(bed.freqs >= low_hz) & (bed.freqs < high_hz)].sum() / power.sum())


def high_band_onsets(bed: Bed, cutoff_hz: float = 5000.0) -> np.ndarray:
    """Onset times (s): where the >5 kHz band's 4 ms RMS doubles (+6 dB) within 8 ms.

    The loop is treated as a cycle, so a hit on the first sample is found too; rises within 40 ms of an
    onset belong to it.
    """
    rate = bed.rate
    high = np.fft.irfft(np.where(bed.freqs < cutoff_hz, 0, bed.spectrum), n=len(bed.audio))
    window, lag = int(0.004 * rate), int(0.008 * rate)
    energy = np.cumsum(np.concatenate([[0.0], high**2, high[:window] ** 2]))
    level = np.sqrt((energy[window:] - energy[:-window])[: len(high)] / window)
    floor = 0.05 * rms(bed.audio)
    rising = np.flatnonzero((level > 2 * np.roll(level, lag)) & (level > floor))
    onsets: list[int] = []
    for index in rising:
        if not onsets or index - onsets[-1] > 0.04 * rate:
            onsets.append(int(index))
    return (np.array(onsets) + window / 2) / rate


def grid_distance(times: np.ndarray, grid: np.ndarray, period_s: float) -> np.ndarray:
    """Distance (s) from each time to the nearest grid point, the grid repeating every ``period_s``."""
    grid = np.concatenate([grid, grid + period_s, grid - period_s])
    return np.min(np.abs(times[:, None] - grid[None, :]), axis=1)


def swung_sixteenths(beat_s: float, beats: int, swing: float) -> np.ndarray:
    within = np.array([0.0, swing / 2, swing, swing + (1 - swing) / 2])
    return (np.arange(beats)[:, None] + within[None, :]).ravel() * beat_s


def chroma(spectrum: np.ndarray, freqs: np.ndarray, low_hz: float = 220.0, high_hz: float = 1000.0) -> np.ndarray:
    """Share of the power in each pitch class (0 is C) between ``low_hz`` and ``high_hz``."""
    band = (freqs >= low_hz) & (freqs < high_hz)
    pitch_class = np.round(12 * np.log2(freqs[band] / 440.0) + 69).astype(int) % 12
    classes = np.bincount(pitch_class, weights=np.abs(spectrum[band]) ** 2, minlength=12)
    return classes / classes.sum()


def seam_steps(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The step and the change of slope across the wrap, and the same two inside the file, per channel."""
    step = np.abs(audio[0] - audio[-1])
    bend = np.abs((audio[0] - audio[-1]) - (audio[-1] - audio[-2]))
    return step, bend, np.abs(np.diff(audio, axis=0)), np.abs(np.diff(audio, n=2, axis=0))


def band_db(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    """Power (dB) of a short stretch between ``low_hz`` and ``high_hz`` (Hann-windowed)."""
    power = np.abs(np.fft.rfft(audio.mean(axis=1) * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(10 * np.log10(power[(freqs >= low_hz) & (freqs < high_hz)].sum()))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2)))


# --- prompt parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "low_bpm", "high_bpm"),
    [
        (DEMO_PROMPT, 84, 84),
        (UPBEAT_PROMPT, 120, 120),
        ("slow jazzy thing at 97.5 BPM", 97.5, 97.5),
        ("dark tense serious", 60, 85),
        ("upbeat happy pop", 108, 132),
        ("calm warm lofi", 70, 95),
        ("ambient drone", 55, 80),
        ("", 70, 95),
    ],
)
def test_tempo_comes_from_an_explicit_bpm_or_the_mood(prompt, low_bpm, high_bpm):
    for seed in (0, 1, 2):
        assert low_bpm <= parse_prompt(prompt, seed).tempo_bpm <= high_bpm


@pytest.mark.parametrize(
    ("prompt", "mode", "drums"),
    [
        ("dark tense serious", "minor", True),
        ("sad melancholic piano", "minor", True),
        (UPBEAT_PROMPT, "major", True),
        ("calm lo-fi in a minor key", "minor", True),
        ("calm lo-fi, no drums", "major", False),
        ("ambient", "major", False),
        ("chill drumless beat", "major", False),
    ],
)
def test_mood_words_choose_mode_and_drums(prompt, mode, drums):
    arrangement = parse_prompt(prompt, 3)
    assert (arrangement.mode, arrangement.drums) == (mode, drums)
    assert f" {mode}," in arrangement.describe()
    assert ("drums (" in arrangement.describe()) == drums


def test_key_follows_the_seed():
    keys = {parse_prompt(DEMO_PROMPT, seed).key for seed in range(40)}
    assert len(keys) >= 8
    assert parse_prompt(DEMO_PROMPT, 5).key == parse_prompt("dark", 5).key


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"bars": 0}, "bars"), ({"bars": 65}, "bars"), ({"duration_s": -2.0}, "duration_s"), ({"duration_s": 3600.0}, "duration_s"), ({"sample_rate": 8000}, "sample_rate")],
)
def test_bad_length_or_rate_is_refused_by_field(tmp_path, fields, field):
    with pytest.raises(EngineError) as raised:
        ProceduralMusicEngine().run(MusicRequest(prompt=DEMO_PROMPT, **fields), tmp_path)
    assert raised.value.field == field
    assert not (tmp_path / "bed.wav").exists()


def test_impossible_tempo_is_refused(tmp_path):
    with pytest.raises(EngineError, match="900 bpm") as raised:
        ProceduralMusicEngine().run(MusicRequest(prompt="calm 900 bpm"), tmp_path)
    assert raised.value.field == "prompt"


# --- the circular building blocks --------------------------------------------------------------------


def test_loop_buffer_wraps_what_rings_past_the_end_onto_the_start():
    buffer = LoopBuffer(100)
    buffer.add(90, np.ones(25))
    buffer.add(-5, pan(np.full(5, 0.5), -1.0))  # a start before the loop is a start near its end
    assert np.all(buffer.audio[:, 90:] >= 1.0) and np.all(buffer.audio[:, :15] == 1.0) and np.all(buffer.audio[:, 15:90] == 0)
    assert buffer.audio[0, 97] == pytest.approx(1.0 + 0.5 * np.sqrt(2)) and buffer.audio[1, 97] == pytest.approx(1.0)
    long = LoopBuffer(10)
    long.add(3, np.ones((2, 25)))  # a tail longer than the loop wraps round more than once
    assert long.audio.sum() == 50 and set(np.unique(long.audio)) == {2.0, 3.0}


@pytest.mark.parametrize("process", ["filter", "reverb"])
def test_filters_and_reverb_treat_the_loop_as_a_cycle(process):
    """Rotating the loop then processing it equals processing then rotating: no edge is special."""
    rng = np.random.default_rng(1)
    loop = rng.standard_normal((2, 12007))  # a prime length, as loops often are
    if process == "filter":
        run = lambda audio: filter_loop(audio, lowpass(800.0), RATE)  # noqa: E731
    else:
        impulse = reverb_impulse(0.4, RATE, rng)  # longer than the loop: wraps more than once
        run = lambda audio: convolve_circular(audio, impulse)  # noqa: E731
    np.testing.assert_allclose(run(np.roll(loop, 3001, axis=1)), np.roll(run(loop), 3001, axis=1), atol=1e-9)
    if process == "filter":  # the FIR's delay is taken back out: it matches the exact zero-phase response
        np.testing.assert_allclose(run(loop), apply_filter(loop, lowpass(800.0), RATE), atol=1e-3)


# --- the rendered bed --------------------------------------------------------------------------------


def test_bed_is_whole_bars_of_stereo_16_bit_at_the_parsed_tempo(beds):
    bed = beds["demo"]
    result = bed.result
    assert (bed.rate, bed.audio.shape[1], bed.subtype) == (RATE, 2, "PCM_16")
    assert len(bed.audio) == round(8 * 4 * 60 / 84 * RATE)
    assert result.tempo_bpm == 84
    assert result.duration_s == pytest.approx(len(bed.audio) / RATE)
    assert result.loopable
    assert "84 bpm" in result.description
    assert "–".join(parse_prompt(DEMO_PROMPT, 7).progression) in result.description
    assert all(word in result.description for word in ("major", "pad", "electric piano", "bass", "drums"))


@pytest.mark.parametrize(("fields", "bars"), [({"duration_s": 10.0}, 5), ({"duration_s": 10.1}, 6), ({"bars": 3}, 3)])
def test_length_is_the_fewest_whole_bars_covering_the_request(tmp_path, fields, bars):
    bed = render(tmp_path, UPBEAT_PROMPT, **fields)  # 120 bpm: a bar is exactly 2 s
    assert len(bed.audio) == bars * 2 * RATE
    assert bed.result.duration_s == bars * 2.0


@pytest.mark.parametrize(("name", "tempo_bpm", "swing"), [("demo", 84, 0.58), ("upbeat", 120, 0.5)])
def test_drum_hits_land_on_the_beat_grid(beds, name, tempo_bpm, swing):
    """Every high-band onset is on a (swung) 16th; the hats sound on (nearly) every eighth."""
    bed = beds[name]
    assert bed.result.tempo_bpm == tempo_bpm
    beat_s, loop_s = 60 / tempo_bpm, len(bed.audio) / RATE
    onsets = high_band_onsets(bed)
    sixteenths = swung_sixteenths(beat_s, 32, swing)
    eighths = sixteenths.reshape(32, 4)[:, ::2].ravel()
    assert len(onsets) >= 60
    assert np.max(grid_distance(onsets, sixteenths, loop_s)) < 0.010
    assert np.mean(grid_distance(eighths, onsets, loop_s) < 0.010) >= 0.95, "hats are missing from the eighths"
    assert np.mean(grid_distance(onsets, sixteenths + beat_s / 8, loop_s) < 0.010) < 0.1, "the hits are a 32nd off the grid"


def test_lofi_off_beats_are_swung(beds):
    phases = (high_band_onsets(beds["demo"]) / (60 / 84)) % 1
    assert np.sum(np.abs(phases - 0.58) < 0.02) >= 28, "the off-beat eighths are not late"
    assert np.sum(np.abs(phases - 0.5) < 0.02) == 0, "straight off-beats in a swung bed"


def test_ambient_without_drums_has_no_transients_and_no_hats(beds):
    bed = beds["ambient"]
    assert "drums" not in bed.result.description
    assert len(high_band_onsets(bed)) == 0
    assert band_fraction(bed, 5000, RATE / 2) < 1e-3
    assert band_fraction(bed, 20, 200) > 0.05  # the bass is still there


def test_bass_plays_each_bars_chord_root(beds):
    audio = beds["ambient"].audio
    arrangement = parse_prompt(AMBIENT_PROMPT, 7)
    bar = len(audio) // 8
    freqs = np.fft.rfftfreq(bar, 1 / RATE)
    for index in range(8):
        numeral = arrangement.progression[index % len(arrangement.progression)]
        root = (arrangement.key + parse_chord(arrangement.mode, numeral)[0]) % 12
        spectrum = np.fft.rfft(audio[index * bar : (index + 1) * bar].mean(axis=1))
        classes = chroma(spectrum, freqs, low_hz=50.0, high_hz=110.0)
        assert int(np.argmax(classes)) == root, f"bar {index + 1}"


@pytest.mark.parametrize("name", ["demo", "upbeat", "dark"])
def test_bass_below_200_hz_and_hats_above_5_khz(beds, name):
    assert band_fraction(beds[name], 20, 200) > 0.2
    assert band_fraction(beds[name], 5000, RATE / 2) > 0.01


def test_dark_is_minor_and_upbeat_is_major_by_ear(beds):
    """The third above the tonic: the minor third sounds in a dark bed, the major third in an upbeat one."""
    for name, prompt, heard, absent in (("dark", DARK_PROMPT, 3, 4), ("upbeat", UPBEAT_PROMPT, 4, 3)):
        key = parse_prompt(prompt, 7).key
        classes = chroma(beds[name].spectrum, beds[name].freqs)
        assert classes[(key + heard) % 12] > 3 * classes[(key + absent) % 12], name


@pytest.mark.parametrize("name", ["demo", "upbeat", "ambient"])
def test_loop_seam_is_as_smooth_as_the_inside(beds, name):
    audio = beds[name].audio
    step, bend, steps, bends = seam_steps(audio)
    assert np.all(step <= np.percentile(steps, 99, axis=0))
    assert np.all(bend <= np.percentile(bends, 99, axis=0))
    beat = round(len(audio) / 32)
    assert 0.5 < rms(audio[-beat:]) / rms(audio[:beat]) < 2.0


@pytest.mark.parametrize("name", ["demo", "upbeat", "dark", "ambient"])
def test_seam_sounds_like_its_twin_bar_line(beds, name):
    """The wrap (bar 8 into bar 1) plays the same chord change and fill as the line into bar 5: 100 ms
    either side of each carry the same energy in the bass, mid and treble bands. Dropping the tails that
    ring past the end instead of wrapping them makes the ambient bed's seam 10–18 dB quieter here."""
    audio = beds[name].audio
    window, middle = int(0.1 * RATE), len(audio) // 2
    seam = np.concatenate([audio[-window:], audio[:window]])
    twin = audio[middle - window : middle + window]
    for low_hz, high_hz in ((20, 200), (200, 2000), (2000, 20000)):
        assert abs(band_db(seam, low_hz, high_hz) - band_db(twin, low_hz, high_hz)) < 3.0, f"{low_hz}-{high_hz} Hz"


@pytest.mark.parametrize("name", ["demo", "upbeat", "dark", "ambient"])
def test_peak_is_normalised_to_minus_3_dbfs(beds, name):
    peak_db = 20 * np.log10(np.max(np.abs(beds[name].audio)))
    assert -3.1 < peak_db < -2.9


def test_ffmpeg_loops_the_bed_without_a_seam(beds, tmp_path):
    audio = beds["demo"].audio
    looped_wav = tmp_path / "looped.wav"
    run_ffmpeg(["-y", "-stream_loop", "2", "-i", str(beds["demo"].result.wav), "-c:a", "pcm_s16le", str(looped_wav)], what="looping the bed")
    looped, rate = soundfile.read(looped_wav, always_2d=True)
    frames = len(audio)
    assert rate == RATE and len(looped) == 3 * frames
    steps = np.abs(np.diff(audio, axis=0))
    for seam in (frames, 2 * frames):
        around = np.abs(np.diff(looped[seam - 48 : seam + 48], axis=0))
        assert np.all(around.max(axis=0) <= np.percentile(steps, 99.9, axis=0))
    np.testing.assert_array_equal(looped[frames : 2 * frames], audio)


def test_same_request_is_bit_identical_and_seed_or_prompt_change_it(beds, tmp_path):
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    reference = digest(beds["demo"].result.wav)
    again = ProceduralMusicEngine().run(MusicRequest(prompt=DEMO_PROMPT, seed=7), tmp_path / "again").wav
    other_seed = ProceduralMusicEngine().run(MusicRequest(prompt=DEMO_PROMPT, seed=8), tmp_path / "seed").wav
    other_prompt = ProceduralMusicEngine().run(MusicRequest(prompt="warm calm lo-fi, 84 bpm", seed=7), tmp_path / "prompt").wav
    assert digest(again) == reference
    assert digest(other_seed) != reference
    assert digest(other_prompt) != reference


def test_demo_bed_is_music_not_a_tone(beds):
    bed = beds["demo"]
    assert bed.cpu_s < 5.0, "rendering 8 bars took more than 5 s of CPU"
    frame = 4096
    mono = bed.audio.mean(axis=1)[: len(bed.audio) // frame * frame].reshape(-1, frame) * np.hanning(frame)
    power = np.abs(np.fft.rfft(mono, axis=1)) ** 2
    centroid = (power * np.fft.rfftfreq(frame, 1 / RATE)).sum(axis=1) / power.sum(axis=1)
    assert 150 < np.median(centroid) < 4000
    assert np.std(centroid) > 0.3 * np.mean(centroid), "the timbre never changes"
    key = parse_prompt(DEMO_PROMPT, 7).key
    classes = chroma(bed.spectrum, bed.freqs)
    assert np.sum(classes > 0.04) >= 5, "fewer than five pitch classes sound"
    assert sum(classes[(key + degree) % 12] for degree in MAJOR_SCALE) > 0.85, "the notes are not in the key"
    intervals = np.diff(high_band_onsets(bed))
    assert np.median(intervals) == pytest.approx(60 / 84 / 2, rel=0.2)


def test_engine_is_registered_for_music():
    spec = resolve_engine(load_config(), "procedural", "music")
    engine = load_engine(spec)
    assert isinstance(engine, ProceduralMusicEngine)
    assert spec.resources.device == "cpu"
