"""Test seam for the SadTalker smoke run (``tests/test_sadtalker_smoke.py``): *finding the face* returns a
fixed face; every other stage of SadTalker runs as it is.

Finding the face is two networks, and with random weights neither can do its job:

* facexlib's RetinaFace finds no face, and SadTalker cannot go on without one (``crop``/``full`` raise on
  "no landmark", ``resize`` indexes an empty detection). ``RetinaFace.detect_faces`` returns one fixed box.
* SadTalker's landmark network (``src/face3d/util/my_awing_arch.py``, ``FAN``) puts some of its 98 random
  heatmap peaks on the heatmap's last pixel (border effects: 1 to 4 of 98 for seeds 0-3 on the test
  photograph), where SadTalker's ``calculate_points`` reads one element past the end (``IndexError``);
  trained weights peak inside the face. ``FAN.get_landmarks`` returns 98 landmarks (WFLW layout) of a
  schematic face laid out in the box it is given.

Both networks are still built and their (random) checkpoints loaded strictly by SadTalker's and facexlib's
own loaders; only those two methods are replaced. After them, everything is SadTalker's: the 98-to-68
conversion, alignment and crop, the 3DMM ResNet, audio2exp, audio2pose, the face renderer, the paste-back.

How: Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that has one; the
``sadtalker`` engine's ``python_path`` setting puts this folder first on ``inference.py``'s PYTHONPATH.
The methods are replaced as their modules are imported (an import hook), so nothing is imported early.
Runs in the ``sadtalker`` environment (numpy).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

import numpy as np

FACE_BOX = (0.25, 0.2, 0.75, 0.8)
"""left, top, right, bottom of the face, as fractions of the image's width and height."""


def _arc(center: tuple[float, float], radii: tuple[float, float], start: float, stop: float, count: int) -> np.ndarray:
    """``count`` points on an ellipse from angle ``start`` to ``stop`` (radians; y grows downwards)."""
    angles = np.linspace(start, stop, count)
    return np.stack([center[0] + radii[0] * np.cos(angles), center[1] + radii[1] * np.sin(angles)], axis=1)


def _eye(center_x: float) -> np.ndarray:
    """8 points from the outer-left corner, over the top, to the right corner and back under it."""
    return _arc((center_x, 0.42), (0.07, 0.03), np.pi, 3 * np.pi - np.pi / 4, 8)


SCHEMATIC_FACE = np.concatenate([
    _arc((0.5, 0.45), (0.46, 0.52), np.pi, 0.0, 33),  # 0-32: contour, left temple, chin, right temple
    _arc((0.31, 0.31), (0.11, 0.04), np.pi, 2 * np.pi, 5), _arc((0.31, 0.33), (0.09, 0.02), 2 * np.pi, np.pi, 4),  # 33-41: left brow
    _arc((0.69, 0.31), (0.11, 0.04), np.pi, 2 * np.pi, 5), _arc((0.69, 0.33), (0.09, 0.02), 2 * np.pi, np.pi, 4),  # 42-50: right brow
    np.stack([np.full(4, 0.5), np.linspace(0.40, 0.56, 4)], axis=1),  # 51-54: nose bridge
    np.stack([np.linspace(0.43, 0.57, 5), np.full(5, 0.60)], axis=1),  # 55-59: nostrils
    _eye(0.33), _eye(0.67),  # 60-75: eyes
    _arc((0.5, 0.76), (0.15, 0.06), np.pi, 3 * np.pi, 13)[:12],  # 76-87: outer lip from the left corner
    _arc((0.5, 0.76), (0.10, 0.02), np.pi, 3 * np.pi, 9)[:8],  # 88-95: inner lip
    np.array([[0.33, 0.42], [0.67, 0.42]]),  # 96-97: pupils
])
"""A face's 98 landmarks in the WFLW order, as fractions of the face box."""


def detect_one_fixed_face(self, image, conf_threshold=0.8, nms_threshold=0.4, use_origin_size=True) -> np.ndarray:
    """RetinaFace's result shape: one row ``x1, y1, x2, y2, score, 5 × (x, y)``, the score above any threshold."""
    height, width = np.asarray(image).shape[:2]
    left, top, right, bottom = FACE_BOX
    box = np.array([left * width, top * height, right * width, bottom * height])
    five = SCHEMATIC_FACE[[96, 97, 54, 76, 82]] * [box[2] - box[0], box[3] - box[1]] + box[:2]
    return np.array([[*box, 0.999, *five.ravel()]], dtype=np.float32)


def schematic_landmarks(self, img: np.ndarray) -> np.ndarray:
    """``FAN.get_landmarks``' result shape: 98 ``(x, y)`` pixel positions in the face crop ``img``."""
    height, width = img.shape[:2]
    return SCHEMATIC_FACE * [width, height]


class _ReplaceOnImport(importlib.abc.MetaPathFinder):
    """Runs ``patch(module)`` right after module ``name`` is first executed."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]):
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # let the other finders find the real module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def execute_then_patch(module: ModuleType) -> None:
            execute(module)
            self.patch(module)

        spec.loader.exec_module = execute_then_patch
        return spec


sys.meta_path.insert(0, _ReplaceOnImport("facexlib.detection.retinaface", lambda module: setattr(module.RetinaFace, "detect_faces", detect_one_fixed_face)))
sys.meta_path.insert(0, _ReplaceOnImport("src.face3d.util.my_awing_arch", lambda module: setattr(module.FAN, "get_landmarks", schematic_landmarks)))
