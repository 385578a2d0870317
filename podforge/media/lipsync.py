"""Lip sync measured from the outside: mouth motion in a rendered video against the speech it should follow.

Nothing here asks the animator where it put the mouth. The face is found anew in the video's first frame
(the landmark detector of :mod:`podforge.media.portraits`); every frame is aligned to that first one on the
upper face (forehead, eyes, nose: OpenCV's ECC, rotation and shift), so the head's own motion is taken out;
what changes in the region of the lips and the jaw is the mouth's motion. Its correlation with the speech
energy per frame (RMS, only while this host speaks) is the lip-sync score: a mouth animated beside the face,
or not at all, scores near zero. Frames are decoded one at a time, so an episode of any length fits.

::

    measure = measure_lip_sync(Path("avatar.mp4"), Path("dialogue.wav"), audio_offset_s=2.0, intervals=[(2.5, 6.1)])
    measure.r  # Pearson r between mouth motion and this host's speech energy
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import soundfile
from pydantic import BaseModel, Field

from podforge.errors import EngineError
from podforge.media.portraits import Box, NoFrontalFace, find_face

FACE_WIDTH_PX = 96
"""The face is measured at this width (larger videos are scaled down around it)."""
SHIFT_S = 1.0
"""The control: the same speech shifted by this much should not correlate (the motion follows *this* speech)."""


class LipSyncMeasure(BaseModel):
    r: float = Field(description="Pearson r between mouth motion and speech RMS per frame")
    r_shifted: float = Field(description=f"the same against the speech shifted by {SHIFT_S:g} s (a control: near zero)")
    frames: int
    mouth: Box = Field(description="the mouth found in the first frame (pixels)")


def decoded_frames(video: Path) -> Iterator[np.ndarray]:
    """The video's frames as RGB arrays, one at a time."""
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise EngineError(f"cannot read the video: {exc}", file=video, field="video") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def _gray(frame: np.ndarray) -> np.ndarray:
    return (frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def mouth_motion(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Box]:
    """Per frame, the mean absolute change of the lips-and-jaw region against the first frame; and that mouth.

    The first frame should show the mouth closed (before anyone speaks). Raises
    :class:`~podforge.media.portraits.NoFrontalFace` when no face is found in it.
    """
    import cv2

    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise NoFrontalFace("the video has no frames")
    found = find_face(first)
    mouth = found.mouth
    # A window around the face, scaled so that the face is FACE_WIDTH_PX wide (alignment cost stays small).
    scale = min(1.0, FACE_WIDTH_PX / found.face.w)
    box, lips = found.face.scaled(scale), mouth.scaled(scale)
    small_first = cv2.resize(first, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else first
    left, top = max(0, int(box.x - 0.4 * box.w)), max(0, int(box.y - 0.3 * box.h))
    right, bottom = min(small_first.shape[1], int(box.x + 1.4 * box.w)), min(small_first.shape[0], int(box.y + 1.6 * box.h))
    window = (slice(top, bottom), slice(left, right))
    # The lips and what the jaw moves, in window coordinates.
    x0, x1 = max(0, int(lips.x - 0.1 * lips.w) - left), int(lips.x + 1.1 * lips.w) - left
    y0, y1 = max(0, int(lips.y) - top), int(lips.y + lips.h + 0.12 * box.h) - top
    reference = _gray(small_first[window])
    upper_face = np.zeros(reference.shape, np.uint8)
    upper_face[max(0, int(box.y - 0.2 * box.h) - top) : max(1, int(lips.y - 0.1 * box.h) - top), max(0, int(box.x - 0.1 * box.w) - left) : int(box.x + 1.1 * box.w) - left] = 255
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-3)
    warp = np.eye(2, 3, dtype=np.float32)
    motion = [0.0]
    for frame in iterator:
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        moved = _gray(small[window])
        try:
            _, warp = cv2.findTransformECC(reference, moved, warp, cv2.MOTION_EUCLIDEAN, criteria, upper_face, 5)
        except cv2.error:
            pass  # did not converge on this frame: keep the last alignment
        aligned = cv2.warpAffine(moved, warp, moved.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        motion.append(float(np.abs(aligned[y0:y1, x0:x1] - reference[y0:y1, x0:x1]).mean()))
    return np.array(motion), mouth


def speech_rms(audio: Path, fps: float, frames: int, *, offset_s: float = 0.0, intervals: Sequence[tuple[float, float]] | None = None) -> np.ndarray:
    """RMS of ``audio`` per video frame (audio starting ``offset_s`` into the video), zero outside ``intervals``."""
    samples, rate = soundfile.read(str(audio), dtype="float64", always_2d=True)
    mono = samples.mean(axis=1)
    index = np.floor((offset_s + np.arange(mono.size) / rate) * fps).astype(np.int64)
    inside = (index >= 0) & (index < frames)
    energy = np.bincount(index[inside], weights=mono[inside] ** 2, minlength=frames)[:frames]
    counts = np.bincount(index[inside], minlength=frames)[:frames]
    rms = np.sqrt(np.divide(energy, counts, out=np.zeros(frames), where=counts > 0))
    if intervals is not None:
        times = (np.arange(frames) + 0.5) / fps
        speaking = np.zeros(frames, dtype=bool)
        for start, end in intervals:
            speaking |= (times >= start) & (times < end)
        rms = rms * speaking
    return rms


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 when either side does not vary (a still picture co-varies with nothing)."""
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def measure_lip_sync(video: Path, audio: Path, *, audio_offset_s: float = 0.0, intervals: Sequence[tuple[float, float]] | None = None) -> LipSyncMeasure:
    """How well the mouth in ``video`` follows the speech in ``audio`` (only ``intervals`` of it, when given).

    ``audio_offset_s`` is where the audio starts on the video's timeline; ``intervals`` are on the video's
    timeline too (a host's lines in the episode).
    """
    with av.open(str(video)) as container:
        fps = float(container.streams.video[0].average_rate or 25)
    motion, mouth = mouth_motion(decoded_frames(video))
    speech = speech_rms(audio, fps, motion.size, offset_s=audio_offset_s, intervals=intervals)
    shift = int(round(SHIFT_S * fps))
    return LipSyncMeasure(r=pearson(motion, speech), r_shifted=pearson(motion, np.roll(speech, shift)), frames=motion.size, mouth=mouth)
