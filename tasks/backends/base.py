"""The roles a model backend can play: a face detector, or a per-face estimator.

A backend is a small class per model, in the spirit of insightface's ``model_zoo``:
construct it with the model file, call ``prepare()`` once per worker process (load the
session and warm it up), then call its one inference method per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from tasks.shared.faces import AgeGender, Box, DetectedFace, Point
from tasks.shared.imaging import RGBImage

# The face types live in tasks/shared/faces.py (the facade's merge uses them too).
__all__ = ["AgeGender", "AgeGenderEstimator", "Box", "DetectedFace", "FaceDetector", "PerFaceEstimator", "Point"]


class FaceDetector(Protocol):
    """Finds faces and their landmark points."""

    name: str
    point_scheme: str

    def prepare(self) -> None: ...

    def detect(self, image: RGBImage) -> list[DetectedFace]: ...


class PerFaceEstimator(Protocol):
    """Estimates something of faces already found by a detector: one answer per face, a
    dataclass or a mapping of JSON-ready values (numbers and strings)."""

    name: str
    face_side: int  # pixels across the network's face input: a face this big loses nothing

    def prepare(self) -> None: ...

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> Sequence[Any]: ...


class AgeGenderEstimator(PerFaceEstimator, Protocol):
    """Estimates age and gender of faces already found by a detector."""

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]: ...
