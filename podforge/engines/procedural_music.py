"""The procedural music bed: an offline, CPU-only generator of loopable chords, bass, drums and pad.

The prompt's mood words pick a :class:`Style` (tempo range, major or minor, chord progression family,
drum pattern and swing, instrument timbres); an explicit "84 bpm" sets the tempo; "no drums" drops the
drums. The seed picks the key, and together with the prompt the small variations (velocities, ghost
notes, oscillator phases, the progression within its family).

The bed is rendered circularly: every sound that rings past the loop's end is added onto its start, and
the filters and reverb treat the loop as a cycle, so the file plays on repeat (ffmpeg ``-stream_loop`` or
``aloop``) with the end flowing into the start and no click.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

from podforge.engines.base import Engine, MusicRequest, MusicResult
from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.media.synth import (
    LoopBuffer,
    apply_filter,
    bandpass,
    convolve_circular,
    envelope,
    filter_loop,
    highpass,
    lowpass,
    pan,
    phase,
    reverb_impulse,
    saw,
    triangle,
)

Mode = Literal["major", "minor"]
Keys = Literal["electric piano", "pluck", "bell"]

DEFAULT_BARS = 8
MAX_BARS = 64
TEMPO_LIMITS_BPM = (40.0, 220.0)
STEPS_PER_BAR = 16
PEAK_DBFS = -3.0
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SHARP_MAJOR_KEYS = {7, 2, 9, 4, 11, 6}


@dataclass(frozen=True)
class DrumKit:
    """One bar of drums on a 16-step grid: a digit is a hit's velocity in ninths, a dot is a rest."""

    kick: str
    snare: str
    hats: str
    open_hats: str = "." * STEPS_PER_BAR
    snare_sound: Literal["snare", "clap"] = "snare"


@dataclass(frozen=True)
class Style:
    name: str
    words: frozenset[str]
    tempo_range_bpm: tuple[int, int]
    mode: Mode
    progressions: Mapping[Mode, tuple[str, ...]]
    """Roman-numeral progressions (one chord a bar), per mode; the seed picks one."""
    swing: float
    """Where the off-beat eighth falls, as a fraction of the beat (0.5 is straight)."""
    drums: DrumKit | None
    bass_pattern: tuple[tuple[int, int, int], ...]
    """(step, length in steps, semitones above the chord root) for each bass note in a bar."""
    comp_pattern: tuple[tuple[int, int, int | None], ...]
    """(step, length in steps, voicing note index, or None for the whole chord) for the keys."""
    keys: Keys
    pad_saw: float
    """Pad oscillator blend: 0 is all triangle (soft), 1 all sawtooth (bright)."""
    pad_cutoff_hz: float
    pad_attack_s: float
    reverb_s: float
    bass_harmonics: tuple[float, ...]
    bass_envelope_s: tuple[float, float]
    """Bass note attack and release: short for a plucked line, long for a legato drone."""
    levels_db: Mapping[str, float]
    """RMS level of each part in the mix, before the master is normalised."""


_CALM_PROGRESSIONS = {
    "major": ("ii7 V7 Imaj7 Imaj7", "vi7 IVmaj7 Imaj7 V7", "IVmaj7 iii7 ii7 Imaj7"),
    "minor": ("i7 iv7 VImaj7 v7", "i7 VImaj7 iv7 v7"),
}
_MIX = {"kick": -16.5, "snare": -21.0, "hats": -27.0, "bass": -17.5, "keys": -19.0, "pad": -21.0}

STYLES = (
    Style(
        name="calm",
        words=frozenset("calm warm chill chilled relaxed relaxing mellow soft gentle cozy cosy lo-fi lofi jazzy smooth easy peaceful laid-back podcast".split()),
        tempo_range_bpm=(76, 92),
        mode="major",
        progressions=_CALM_PROGRESSIONS,
        swing=0.58,
        drums=DrumKit(kick="9......6..8.....", snare="....8.......8...", hats="7.4.6.4.7.4.6.5."),
        bass_pattern=((0, 6, 0), (6, 4, 0), (10, 4, 7), (14, 2, 12)),
        comp_pattern=((0, 7, None), (7, 3, None), (10, 6, None)),
        keys="electric piano",
        pad_saw=0.35,
        pad_cutoff_hz=1100.0,
        pad_attack_s=0.6,
        reverb_s=1.6,
        bass_harmonics=(1.0, 0.35, 0.12),
        bass_envelope_s=(0.004, 0.04),
        levels_db=_MIX,
    ),
    Style(
        name="upbeat",
        words=frozenset("upbeat energetic happy bright uplifting driving electronic dance fun punchy lively cheerful groovy edm house pop fast".split()),
        tempo_range_bpm=(112, 128),
        mode="major",
        progressions={"major": ("I V vi IV", "I IV vi V", "vi IV I V"), "minor": ("i VI III VII", "i VII VI VII")},
        swing=0.5,
        drums=DrumKit(kick="9...9...9...9...", snare="....9.......9...", hats="5.3.5.3.5.3.5.3.", open_hats="..7...7...7...7.", snare_sound="clap"),
        bass_pattern=((0, 2, 0), (2, 2, 0), (6, 2, 0), (10, 2, 0), (12, 2, 12), (14, 2, 0)),
        comp_pattern=((2, 1, None), (6, 1, None), (10, 1, None), (14, 1, None)),
        keys="pluck",
        pad_saw=1.0,
        pad_cutoff_hz=2600.0,
        pad_attack_s=0.25,
        reverb_s=1.2,
        bass_harmonics=(1.0, 0.5, 0.33, 0.25, 0.2),
        bass_envelope_s=(0.004, 0.04),
        levels_db={**_MIX, "kick": -14.0, "pad": -23.0},
    ),
    Style(
        name="dark",
        words=frozenset("dark tense serious ominous mysterious suspense suspenseful somber sombre brooding menacing sad melancholic melancholy cinematic noir gloomy".split()),
        tempo_range_bpm=(66, 80),
        mode="minor",
        progressions={"minor": ("i VI III VII", "i iv VI V", "i VI iv V"), "major": ("I bVI bVII I", "I bIII bVI bVII")},
        swing=0.5,
        drums=DrumKit(kick="9.....7...6.....", snare="........9.......", hats="6.3.5.3.6.3.5.3."),
        bass_pattern=((0, 10, 0), (10, 3, 0), (13, 3, 7)),
        comp_pattern=tuple((step, 2, index) for step, index in zip(range(0, 16, 2), (0, 1, 2, 1, 0, 1, 2, 3))),
        keys="pluck",
        pad_saw=1.0,
        pad_cutoff_hz=700.0,
        pad_attack_s=0.9,
        reverb_s=2.4,
        bass_harmonics=(1.0, 0.3, 0.15),
        bass_envelope_s=(0.004, 0.04),
        levels_db={**_MIX, "keys": -22.0, "pad": -19.0},
    ),
    Style(
        name="ambient",
        words=frozenset("ambient drone atmospheric spacious ethereal dreamy floating meditative airy".split()),
        tempo_range_bpm=(60, 76),
        mode="major",
        progressions={"major": ("Imaj7 IVmaj7 vi7 IVmaj7", "Iadd9 vi7 IVmaj7 Iadd9"), "minor": ("i7 VImaj7 iv7 i7", "i7 VImaj7 IIImaj7 VII")},
        swing=0.5,
        drums=None,
        bass_pattern=((0, 16, 0),),
        comp_pattern=((0, 8, None), (8, 8, None)),
        keys="bell",
        pad_saw=0.3,
        pad_cutoff_hz=2500.0,
        pad_attack_s=1.5,
        reverb_s=4.0,
        bass_harmonics=(1.0, 0.2),
        bass_envelope_s=(0.3, 0.8),
        levels_db={**_MIX, "keys": -23.0, "pad": -17.0, "bass": -22.0},
    ),
)

_TEMPO = re.compile(r"(\d+(?:\.\d+)?)\s*-?\s*bpm\b", re.I)
_NO_DRUMS = re.compile(r"\b(?:no|without)\s+(?:drums?|beats?|percussion)\b|\bdrumless\b", re.I)
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


@dataclass(frozen=True)
class Arrangement:
    """What the prompt and seed chose: everything the renderer needs besides the length."""

    style: Style
    tempo_bpm: float
    mode: Mode
    key: int
    """Pitch class of the tonic (0 is C)."""
    progression: tuple[str, ...]
    drums: bool
    drum_gain_db: float

    def describe(self) -> str:
        chords = " ".join(chord_name(self.key, self.mode, numeral) for numeral in self.progression)
        tonic = note_names(self.key, self.mode)[self.key]
        parts = ["pad", self.style.keys, "bass"]
        if self.drums and self.style.drums:
            snare = self.style.drums.snare_sound
            swing = f", {round(self.style.swing * 100)}% swing" if self.style.swing > 0.5 else ""
            parts.append(f"drums (kick, {snare}, hats{swing})")
        return (
            f"{tonic} {self.mode}, {self.tempo_bpm:g} bpm, {self.style.name}; "
            f"progression {'–'.join(self.progression)} ({chords}); instruments: {', '.join(parts)}"
        )


def parse_prompt(prompt: str, seed: int) -> Arrangement:
    """Choose style, tempo, mode, key and progression from a free-text prompt and a seed."""
    text = prompt.lower()
    words = _WORD.findall(text)
    style = _style_for(words)
    rng = _rng(prompt, seed, "arrangement")
    if match := _TEMPO.search(text):
        tempo = float(match[1])
        low, high = TEMPO_LIMITS_BPM
        if not low <= tempo <= high:
            raise EngineError(f"tempo {tempo:g} bpm in the music prompt is outside {low:g}–{high:g} bpm", field="prompt")
    else:
        tempo = float(rng.integers(style.tempo_range_bpm[0], style.tempo_range_bpm[1] + 1))
    mode: Mode = "minor" if "minor" in words else "major" if "major" in words else style.mode
    progressions = style.progressions[mode]
    progression = progressions[int(rng.integers(len(progressions)))].split()
    gentle = any(word in words for word in ("soft", "gentle", "quiet", "subtle"))
    return Arrangement(
        style=style,
        tempo_bpm=tempo,
        mode=mode,
        key=int(np.random.default_rng(seed % 2**32).integers(12)),
        progression=tuple(progression),
        drums=style.drums is not None and not _NO_DRUMS.search(text),
        drum_gain_db=-4.0 if gentle else 0.0,
    )


def _style_for(words: list[str]) -> Style:
    """The style with the most mood words in the prompt (ties: the one named first); calm by default."""
    scores = {style.name: sum(word in style.words for word in words) for style in STYLES}
    first_mention = {style.name: next((i for i, word in enumerate(words) if word in style.words), len(words)) for style in STYLES}
    best = max(STYLES, key=lambda style: (scores[style.name], -first_mention[style.name]))
    return best if scores[best.name] else STYLES[0]


def _rng(prompt: str, seed: int, purpose: str) -> np.random.Generator:
    """A generator for one purpose, seeded by the seed and the prompt's words (case and spacing ignored)."""
    digest = hashlib.sha256(f"{purpose}:{' '.join(prompt.lower().split())}".encode()).digest()
    return np.random.default_rng([seed % 2**32, int.from_bytes(digest[:8], "little")])


# --- harmony ---------------------------------------------------------------------------------------

_SCALES: dict[Mode, tuple[int, ...]] = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_NUMERALS = ("i", "ii", "iii", "iv", "v", "vi", "vii")
_CHORD = re.compile(r"^([b#]?)([ivIV]+)(maj7|7|add9)?$")
_SUFFIXES = {("maj7", True): "maj7", ("7", True): "7", ("7", False): "m7", ("add9", True): "add9", ("", True): "", ("", False): "m"}
_INTERVALS = {"": (0, 4, 7), "m": (0, 3, 7), "maj7": (0, 4, 7, 11), "7": (0, 4, 7, 10), "m7": (0, 3, 7, 10), "add9": (0, 2, 4, 7)}


def parse_chord(mode: Mode, numeral: str) -> tuple[int, str]:
    """A Roman numeral ("ii7", "bVI", "Imaj7") as (root in semitones above the tonic, chord suffix)."""
    match = _CHORD.match(numeral)
    if not match or match[2].lower() not in _NUMERALS or (match[3] or "", match[2].isupper()) not in _SUFFIXES:
        raise ValueError(f"unknown chord numeral {numeral!r}")
    accidental = {"b": -1, "#": 1, "": 0}[match[1]]
    root = _SCALES[mode][_NUMERALS.index(match[2].lower())] + accidental
    return root % 12, _SUFFIXES[(match[3] or "", match[2].isupper())]


def chord_name(key: int, mode: Mode, numeral: str) -> str:
    root, suffix = parse_chord(mode, numeral)
    return note_names(key, mode)[(key + root) % 12] + suffix


def note_names(key: int, mode: Mode) -> tuple[str, ...]:
    """Sharps in the keys whose signature has sharps, flats otherwise."""
    relative_major = key if mode == "major" else (key + 3) % 12
    return SHARP_NAMES if relative_major in SHARP_MAJOR_KEYS else FLAT_NAMES


def voice_lead(chords: list[tuple[int, ...]], low: int = 55, high: int = 76) -> list[tuple[int, ...]]:
    """Voicings (MIDI notes) for pitch-class chords, each moving as little as possible from the last.

    The progression is led twice round and the second pass kept, so the loop's last chord also leads
    smoothly into its first; the register bounds stop the voicings drifting.
    """
    previous: tuple[int, ...] = ((low + high) // 2,)
    voicings: list[tuple[int, ...]] = []
    for chord in chords * 2:
        previous = min(_voicings(chord, low, high), key=lambda voicing: _movement(previous, voicing))
        voicings.append(previous)
    return voicings[len(chords) :]


def _voicings(chord: tuple[int, ...], low: int, high: int) -> list[tuple[int, ...]]:
    """Close-position voicings of every inversion that fit in [low, high]."""
    found = []
    for inversion in range(len(chord)):
        order = chord[inversion:] + chord[:inversion]
        for bottom in range(low, high + 1):
            if bottom % 12 != order[0]:
                continue
            notes = [bottom]
            for pitch_class in order[1:]:
                notes.append(notes[-1] + (pitch_class - notes[-1]) % 12)
            if notes[-1] <= high:
                found.append(tuple(notes))
    return found


def _movement(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(min(abs(x - y) for y in b) for x in a) + sum(min(abs(x - y) for y in a) for x in b)


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


# --- time ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Where each 16th-note step of each bar falls, in samples, with swing on the off-beat eighths."""

    sample_rate: int
    tempo_bpm: float
    bars: int
    swing: float

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def frames(self) -> int:
        return round(self.bars * 4 * self.beat_s * self.sample_rate)

    def time_s(self, bar: int, step: int) -> float:
        beat, sixteenth = divmod(step, 4)
        within = sixteenth / 4
        if within < 0.5:
            swung = within * 2 * self.swing
        else:
            swung = self.swing + (within - 0.5) * 2 * (1.0 - self.swing)
        return (bar * 4 + beat + swung) * self.beat_s

    def frame(self, bar: int, step: int) -> int:
        return round(self.time_s(bar, step) * self.sample_rate)

    def length(self, steps: float) -> int:
        return round(steps * self.beat_s / 4 * self.sample_rate)


# --- instruments -----------------------------------------------------------------------------------


def render_pad(grid: Grid, style: Style, voicings: list[tuple[int, ...]], rng: np.random.Generator) -> np.ndarray:
    """Detuned sawtooth/triangle voices, slow attack, held a bar per chord and released into the next."""
    rate = grid.sample_rate
    buffer = LoopBuffer(grid.frames)
    release = int(1.6 * rate)
    for bar in range(grid.bars):
        held = grid.frame(bar + 1, 0) - grid.frame(bar, 0)
        gain = envelope(held, attack=int(style.pad_attack_s * rate), release=release)
        for note in voicings[bar % len(voicings)]:
            for cents, position in ((-9.0, -0.7), (0.0, 0.0), (9.0, 0.7)):
                freq = midi_hz(note + cents / 100)
                cycle = phase(freq, len(gain), rate, start=rng.random())
                wave = style.pad_saw * saw(cycle, freq / rate) + (1 - style.pad_saw) * triangle(cycle)
                buffer.add(grid.frame(bar, 0), pan(wave * gain, position))
    return filter_loop(buffer.audio, lowpass(style.pad_cutoff_hz, 2), rate)


def _key_tone(kind: Keys, freq: float, held: int, rate: int, velocity: float) -> np.ndarray:
    """One keyboard note: an FM electric piano, a plucked string (additive, upper partials dying first) or a bell."""
    if kind == "electric piano":
        gain = envelope(held, attack=int(0.003 * rate), release=int(0.25 * rate), decay_frames=1.4 * rate)
        t = np.arange(len(gain)) / rate
        index = 1.6 * velocity * np.exp(-t / 0.35)
        return gain * np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * freq * t))
    if kind == "bell":
        gain = envelope(held, attack=int(0.12 * rate), release=int(1.2 * rate), decay_frames=2.5 * rate)
        t = np.arange(len(gain)) / rate
        index = 1.2 * np.exp(-t / 1.5)
        return gain * np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * 2 * freq * t))
    gain = envelope(held, attack=int(0.002 * rate), release=int(0.12 * rate))
    t = np.arange(len(gain)) / rate
    harmonics = [k for k in range(1, 11) if k * freq < rate / 2.5]
    partials = sum(np.sin(2 * np.pi * k * freq * t) * np.exp(-t * (2.0 + 3.0 * k)) / k for k in harmonics)
    return gain * partials


def render_keys(grid: Grid, style: Style, voicings: list[tuple[int, ...]], rng: np.random.Generator) -> np.ndarray:
    """The chords played on the keys in the style's comping rhythm, strummed slightly, notes spread in the stereo field."""
    rate = grid.sample_rate
    buffer = LoopBuffer(grid.frames)
    strum = int(0.012 * rate)
    for bar in range(grid.bars):
        voicing = voicings[bar % len(voicings)]
        for step, steps, index in style.comp_pattern:
            notes = voicing if index is None else (voicing[index % len(voicing)],)
            velocity = rng.uniform(0.75, 1.0)
            held = grid.length(steps)
            for order, note in enumerate(notes):
                tone = _key_tone(style.keys, midi_hz(note), held, rate, velocity) * velocity
                position = (note - 66) / 14
                buffer.add(grid.frame(bar, step) + order * strum, pan(tone, float(np.clip(position, -0.6, 0.6))))
    return buffer.audio


def render_bass(grid: Grid, style: Style, roots: list[int]) -> np.ndarray:
    """A bass line on the chord roots (MIDI 33–44, about 55–104 Hz) in the style's rhythm."""
    rate = grid.sample_rate
    buffer = LoopBuffer(grid.frames)
    attack, release = (int(seconds * rate) for seconds in style.bass_envelope_s)
    for bar in range(grid.bars):
        root = 33 + (roots[bar % len(roots)] - 33) % 12
        for step, steps, interval in style.bass_pattern:
            held = grid.length(steps) - int(0.02 * rate)
            gain = envelope(held, attack=attack, release=release)
            t = np.arange(len(gain)) / rate
            freq = midi_hz(root + interval)
            tone = sum(amp * np.sin(2 * np.pi * k * freq * t) for k, amp in enumerate(style.bass_harmonics, start=1))
            buffer.add(grid.frame(bar, step), tone * gain)
    return buffer.audio


def _drum_sounds(kind: str, rate: int, rng: np.random.Generator, variants: int = 4) -> list[np.ndarray]:
    """A few takes of one drum (different noise each), so repeated hits are not identical."""
    sounds = []
    for _ in range(variants):
        if kind == "kick":
            t = np.arange(int(0.45 * rate)) / rate
            freq = 50.0 + 110.0 * np.exp(-t / 0.03)
            body = np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / 0.13)
            click = apply_filter(rng.standard_normal(len(t)), bandpass(1500.0, 5000.0), rate) * np.exp(-t / 0.004) * 0.15
            sound = np.tanh(1.5 * (body + click)) / np.tanh(1.5)
        elif kind == "snare":
            t = np.arange(int(0.3 * rate)) / rate
            noise = apply_filter(rng.standard_normal(len(t)), bandpass(1200.0, 9000.0), rate) * np.exp(-t / 0.09)
            sound = 0.8 * noise + 0.6 * np.sin(2 * np.pi * 185.0 * t) * np.exp(-t / 0.05)
        elif kind == "clap":
            t = np.arange(int(0.35 * rate)) / rate
            bursts = sum(np.where(t >= delay, np.exp(-(t - delay) / 0.006), 0.0) for delay in (0.0, 0.009, 0.018))
            tail = (1.0 - np.exp(-t / 0.012)) * np.exp(-t / 0.11)  # the room swells in under the bursts
            sound = apply_filter(rng.standard_normal(len(t)), bandpass(900.0, 6000.0), rate) * (0.7 * bursts + 0.5 * tail)
        else:  # "hat" or "open hat"
            t = np.arange(int((0.4 if kind == "open hat" else 0.1) * rate)) / rate
            decay = 0.12 if kind == "open hat" else 0.022
            sound = apply_filter(rng.standard_normal(len(t)), highpass(7000.0, 3), rate) * np.exp(-t / decay)
        attack = int(0.001 * rate)
        sound[:attack] *= np.linspace(0.0, 1.0, attack, endpoint=False)
        sound[-attack:] *= np.linspace(1.0, 0.0, attack)
        sounds.append(sound / np.max(np.abs(sound)))
    return sounds


def render_drums(grid: Grid, kit: DrumKit, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Kick, snare (or clap) and hats from the kit's patterns, with velocity variation, ghost notes and fills."""
    rate = grid.sample_rate
    buses = {name: LoopBuffer(grid.frames) for name in ("kick", "snare", "hats")}
    sounds = {kind: _drum_sounds(kind, rate, rng) for kind in ("kick", kit.snare_sound, "hat", "open hat")}
    lanes = (("kick", "kick", kit.kick, 0.0), ("snare", kit.snare_sound, kit.snare, -0.05), ("hats", "hat", kit.hats, 0.25), ("hats", "open hat", kit.open_hats, 0.3))
    for bar in range(grid.bars):
        fill = bar % 4 == 3 or bar == grid.bars - 1
        for bus, kind, pattern, position in lanes:
            hits = {step: int(mark) / 9 for step, mark in enumerate(pattern) if mark != "."}
            if bus == "snare":
                if kind == "snare":  # ghost notes on the off 16ths
                    for step in range(1, STEPS_PER_BAR, 2):
                        if rng.random() < 0.12:
                            hits.setdefault(step, 0.2)
                if fill:
                    hits.update({14: 0.45, 15: 0.6})
            for step, velocity in sorted(hits.items()):
                take = sounds[kind][int(rng.integers(len(sounds[kind])))]
                velocity *= rng.uniform(0.85, 1.0)
                buses[bus].add(grid.frame(bar, step), pan(take * velocity, position))
    return {name: bus.audio for name, bus in buses.items()}


# --- mix -------------------------------------------------------------------------------------------

_REVERB_SENDS = {"pad": 0.5, "keys": 0.45, "snare": 0.18, "hats": 0.1}


def render_bed(arrangement: Arrangement, bars: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The mixed loop, stereo, peak-normalised to :data:`PEAK_DBFS`."""
    style = arrangement.style
    grid = Grid(sample_rate=sample_rate, tempo_bpm=arrangement.tempo_bpm, bars=bars, swing=style.swing)
    chords = [parse_chord(arrangement.mode, numeral) for numeral in arrangement.progression]
    pitch_classes = [tuple((arrangement.key + root + step) % 12 for step in _INTERVALS[suffix]) for root, suffix in chords]
    voicings = voice_lead(pitch_classes)
    roots = [(arrangement.key + root) % 12 for root, _ in chords]

    parts = {
        "pad": render_pad(grid, style, voicings, rng),
        "keys": render_keys(grid, style, voicings, rng),
        "bass": render_bass(grid, style, roots),
    }
    if arrangement.drums and style.drums:
        parts.update(render_drums(grid, style.drums, rng))

    mix = np.zeros((2, grid.frames))
    sends = np.zeros((2, grid.frames))
    for name, audio in parts.items():
        level_db = style.levels_db[name] + (arrangement.drum_gain_db if name in ("kick", "snare", "hats") else 0.0)
        audio = audio * 10 ** (level_db / 20) / max(_rms(audio), 1e-12)
        mix += audio
        sends += _REVERB_SENDS.get(name, 0.0) * audio
    mix += 0.6 * convolve_circular(sends, reverb_impulse(style.reverb_s, sample_rate, rng))
    return mix * 10 ** (PEAK_DBFS / 20) / np.max(np.abs(mix))


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2)))


def bars_for(request: MusicRequest, tempo_bpm: float) -> int:
    """``request.bars`` (default 8), or the fewest whole bars covering ``request.duration_s`` when set."""
    if request.duration_s is not None:
        if request.duration_s <= 0:
            raise EngineError(f"music duration must be positive, got {request.duration_s}", field="duration_s")
        bars = math.ceil(request.duration_s / (4 * 60.0 / tempo_bpm) - 1e-9)
        field = "duration_s"
    else:
        bars = DEFAULT_BARS if request.bars is None else request.bars
        field = "bars"
    if not 1 <= bars <= MAX_BARS:
        raise EngineError(f"a music bed is 1–{MAX_BARS} bars (it is looped under the episode), got {bars} bars", field=field)
    return bars


class ProceduralMusicEngine(Engine[MusicRequest, MusicResult]):
    """Offline music beds from a mood prompt: pad, keys, bass and drums, rendered as a seamless loop."""

    name = "procedural"
    kind = "music"
    version = "1"
    Request = MusicRequest
    Result = MusicResult

    def run(self, request: MusicRequest, workdir: Path) -> MusicResult:
        if not 22050 <= request.sample_rate <= 192000:
            raise EngineError(f"sample rate {request.sample_rate} Hz is outside 22050–192000 Hz", field="sample_rate")
        arrangement = parse_prompt(request.prompt, request.seed)
        bars = bars_for(request, arrangement.tempo_bpm)
        bed = render_bed(arrangement, bars, request.sample_rate, _rng(request.prompt, request.seed, "performance"))
        pcm = np.round(bed.T * 32767).astype(np.int16)
        wav_path = Path(workdir) / "bed.wav"
        with atomic_path(wav_path) as tmp:
            soundfile.write(tmp, pcm, request.sample_rate, subtype="PCM_16", format="WAV")
        return MusicResult(
            wav=wav_path,
            duration_s=len(pcm) / request.sample_rate,
            tempo_bpm=arrangement.tempo_bpm,
            loopable=True,
            description=arrangement.describe(),
        )
