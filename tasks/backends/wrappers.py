"""Opt-in wrappers around any age/gender estimator, whatever the model.

- :class:`Mirrored` also estimates every face in the mirrored picture and averages the
  two views (test-time flip augmentation), at twice the cost.
- :class:`Abstaining` reports ``Unknown`` when the gender's confidence stays below a
  threshold, rather than the model's best guess.

The router stacks them on the configured backend (``AGEGENDER_FLIP``,
``MIN_GENDER_CONFIDENCE``); both are off by default, since neither gets more genders
right on the labelled photos (docs/benchmarks.md, accuracy).
"""

from __future__ import annotations

import cv2

from tasks.backends.base import AgeGender, AgeGenderEstimator, Box, DetectedFace
from tasks.shared.imaging import RGBImage

UNKNOWN = "Unknown"


def male_probability(estimate: AgeGender) -> float:
    if estimate.gender == "Male":
        return estimate.gender_confidence
    if estimate.gender == "Female":
        return 1.0 - estimate.gender_confidence
    raise ValueError(f"a view said {estimate.gender!r}: only Male/Female can be averaged")


def from_male_probability(age: float, age_confidence: float, male: float) -> AgeGender:
    gender, confidence = ("Male", male) if male >= 0.5 else ("Female", 1.0 - male)
    return AgeGender(age=age, age_confidence=age_confidence, gender=gender, gender_confidence=confidence)


def mirror(face: DetectedFace, width: int) -> DetectedFace:
    """The same face in the picture flipped left to right (points keep their order)."""
    b = face.box
    return DetectedFace(Box(width - b.x2, b.y1, width - b.x1, b.y2, b.score), tuple((width - x, y) for x, y in face.points))


class Mirrored:
    """An estimator that averages each face's estimate with that of its mirror image."""

    def __init__(self, estimator: AgeGenderEstimator) -> None:
        self.estimator = estimator
        self.name = f"{estimator.name}+mirrored"
        self.face_side = estimator.face_side

    def prepare(self) -> None:
        self.estimator.prepare()

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]:
        if not faces:
            return []
        width = image.shape[1]
        flipped = cv2.flip(image, 1)  # far cheaper than a contiguous copy of image[:, ::-1]
        plain = self.estimator.estimate(image, faces)
        mirrored = self.estimator.estimate(flipped, [mirror(f, width) for f in faces])
        return [
            from_male_probability(
                (a.age + b.age) / 2, (a.age_confidence + b.age_confidence) / 2, (male_probability(a) + male_probability(b)) / 2
            )
            for a, b in zip(plain, mirrored, strict=True)
        ]


class Abstaining:
    """An estimator that says ``Unknown`` for a gender below ``min_confidence``."""

    def __init__(self, estimator: AgeGenderEstimator, min_confidence: float) -> None:
        self.estimator = estimator
        self.min_confidence = min_confidence
        self.name = estimator.name
        self.face_side = estimator.face_side

    def prepare(self) -> None:
        self.estimator.prepare()

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]:
        return [
            e if e.gender_confidence >= self.min_confidence else AgeGender(e.age, e.age_confidence, UNKNOWN, e.gender_confidence)
            for e in self.estimator.estimate(image, faces)
        ]
