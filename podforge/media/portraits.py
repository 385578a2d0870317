"""Host portraits: loading and checking the image, and finding the face in it.

A portrait is read with Pillow (EXIF orientation applied, any mode flattened to RGB) and, when larger than
:data:`MAX_WORKING_SIDE`, downscaled to a working copy in memory; the user's file is never changed. Faces
are found with the Haar cascades that ``opencv-python-headless`` 4.x ships (frontal face, eyes, smile):
no model download, a wheel that installs beside numpy 2 in the main environment, and, for a frontal
portrait, a face box precise enough to place the eyes and the mouth by face geometry. The eye and smile
cascades refine those places when they agree with the geometry.

Every failure is a :class:`~podforge.errors.ScriptError` that names the host's field
(``hosts.NAME.portrait``) and the file.
"""

from __future__ import annotations

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
"""Faces are searched on a copy whose longer side is this (Haar cascades are scale-invariant)."""
MIN_FACE_FRACTION = 0.06
"""The smallest face searched for, as a fraction of the image's shorter side."""


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

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Box:
        return Box(x=self.x * factor + dx, y=self.y * factor + dy, w=self.w * factor, h=self.h * factor)


class FaceGeometry(BaseModel):
    """Where the parts of one face are. ``mouth`` is the closed lips' box, ``chin_y`` the jaw's lowest point."""

    face: Box
    left_eye: Box
    right_eye: Box
    mouth: Box
    chin_y: float
    eyes_detected: bool = False
    mouth_detected: bool = False

    def transformed(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> FaceGeometry:
        """The same face after scaling the image by ``factor`` and shifting it by (``dx``, ``dy``)."""
        return self.model_copy(
            update={
                "face": self.face.scaled(factor, dx, dy),
                "left_eye": self.left_eye.scaled(factor, dx, dy),
                "right_eye": self.right_eye.scaled(factor, dx, dy),
                "mouth": self.mouth.scaled(factor, dx, dy),
                "chin_y": self.chin_y * factor + dy,
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
    face = detect_face(rgb)
    if face is None:
        raise ScriptError(
            f"no face found in {speaker}'s portrait; use a frontal photo where the face is at least 1/16 of the image's shorter side",
            file=path,
            field=portrait_field(speaker),
        )
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


@lru_cache(maxsize=1)
def _cascades():
    import cv2

    def load(name: str):
        classifier = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
        if classifier.empty():
            raise RuntimeError(f"OpenCV's {name} is missing; install opencv-python-headless 4.x (5.x ships no cascades)")
        return classifier

    return load("haarcascade_frontalface_default.xml"), load("haarcascade_frontalface_alt2.xml"), load("haarcascade_eye.xml"), load("haarcascade_smile.xml")


def detect_face(rgb: np.ndarray) -> FaceGeometry | None:
    """The largest frontal face in ``rgb`` with its eyes and mouth, or None when there is none."""
    import cv2

    frontal, frontal_alt, eye_cascade, smile_cascade = _cascades()
    scale = min(1.0, DETECTION_SIDE / max(rgb.shape[:2]))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_face = max(24, int(min(gray.shape) * MIN_FACE_FRACTION))
    faces = []
    for cascade in (frontal, frontal_alt):
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
        if len(faces):
            break
    if not len(faces):
        return None
    fx, fy, fw, fh = (float(v) for v in max(faces, key=lambda box: box[2] * box[3]))
    geometry = _geometry_from_face_box(Box(x=fx, y=fy, w=fw, h=fh))
    geometry = _refine_eyes(geometry, gray, eye_cascade)
    geometry = _refine_mouth(geometry, gray, smile_cascade)
    return geometry.transformed(1 / scale)


def _geometry_from_face_box(face: Box) -> FaceGeometry:
    """Eyes, mouth and chin placed by the proportions of a Haar frontal-face box."""
    eye_w, eye_h = 0.24 * face.w, 0.15 * face.h
    eye_y = face.y + 0.38 * face.h - eye_h / 2
    mouth_w, mouth_h = 0.42 * face.w, 0.12 * face.h
    return FaceGeometry(
        face=face,
        left_eye=Box(x=face.x + 0.30 * face.w - eye_w / 2, y=eye_y, w=eye_w, h=eye_h),
        right_eye=Box(x=face.x + 0.70 * face.w - eye_w / 2, y=eye_y, w=eye_w, h=eye_h),
        mouth=Box(x=face.cx - mouth_w / 2, y=face.y + 0.80 * face.h - mouth_h / 2, w=mouth_w, h=mouth_h),
        chin_y=face.y + 1.12 * face.h,
    )


def _refine_eyes(geometry: FaceGeometry, gray: np.ndarray, eye_cascade) -> FaceGeometry:
    """Use the eye cascade when it finds one eye in each upper quarter of the face at a plausible height."""
    face = geometry.face
    top, bottom = int(face.y + 0.15 * face.h), int(face.y + 0.60 * face.h)
    left, right = int(face.x), int(face.x + face.w)
    region = gray[max(0, top) : bottom, max(0, left) : right]
    if region.size == 0:
        return geometry
    min_eye = max(6, int(face.w * 0.12))
    eyes = [Box(x=x + left, y=y + top, w=w, h=h) for x, y, w, h in eye_cascade.detectMultiScale(region, 1.1, 5, minSize=(min_eye, min_eye))]
    left_candidates = [e for e in eyes if e.cx < face.cx and abs(e.cy - geometry.left_eye.cy) < 0.12 * face.h]
    right_candidates = [e for e in eyes if e.cx >= face.cx and abs(e.cy - geometry.right_eye.cy) < 0.12 * face.h]
    if not (left_candidates and right_candidates):
        return geometry
    found_left = min(left_candidates, key=lambda e: abs(e.cx - geometry.left_eye.cx))
    found_right = min(right_candidates, key=lambda e: abs(e.cx - geometry.right_eye.cx))
    return geometry.model_copy(update={"left_eye": _eye_within(found_left), "right_eye": _eye_within(found_right), "eyes_detected": True})


def _eye_within(cascade_box: Box) -> Box:
    """The eye itself: the middle of the eye cascade's box, which also holds the brow and the lids."""
    return Box(x=cascade_box.x + 0.08 * cascade_box.w, y=cascade_box.y + 0.28 * cascade_box.h, w=0.84 * cascade_box.w, h=0.5 * cascade_box.h)


def _refine_mouth(geometry: FaceGeometry, gray: np.ndarray, smile_cascade) -> FaceGeometry:
    """Use the smile cascade (it finds closed and smiling mouths alike) when its box sits where a mouth can."""
    face, guess = geometry.face, geometry.mouth
    top, bottom = int(face.y + 0.55 * face.h), int(face.y + 1.05 * face.h)
    left, right = int(face.x + 0.1 * face.w), int(face.x + 0.9 * face.w)
    region = gray[max(0, top) : bottom, max(0, left) : right]
    if region.size == 0:
        return geometry
    found = smile_cascade.detectMultiScale(region, 1.1, 15, minSize=(max(8, int(face.w * 0.25)), max(4, int(face.h * 0.1))))
    candidates = [Box(x=x + left, y=y + top, w=w, h=h) for x, y, w, h in found]
    plausible = [m for m in candidates if abs(m.cx - face.cx) < 0.12 * face.w and abs(m.cy - guess.cy) < 0.12 * face.h and m.w < 0.75 * face.w]
    if not plausible:
        return geometry
    mouth = min(plausible, key=lambda m: abs(m.cy - guess.cy))
    return geometry.model_copy(update={"mouth": mouth, "chin_y": max(geometry.chin_y, mouth.y + mouth.h + 0.18 * face.h), "mouth_detected": True})
