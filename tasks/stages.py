"""The work of each stage as plain functions: image in, JSON-ready dict out.

Celery tasks wrap these (see ``tasks/landmark.py`` and ``tasks/agegender.py``); tests
call them directly with real models and no broker.
"""

from __future__ import annotations

import time
from typing import Any

from tasks.backends.base import AgeGenderEstimator, DetectedFace, FaceDetector
from tasks.imaging import RGBImage

SUCCESS = "Success"
FAILURE = "Failure"


def failed(error: str, runtime: float = 0.0) -> dict[str, Any]:
    """The result of a stage that could not run; the chord still completes with it."""
    return {"status": FAILURE, "error": error, "runtime": runtime, "faces": []}


def detect_landmarks(image: RGBImage, detector: FaceDetector, scale: float = 1.0) -> dict[str, Any]:
    """Every face's box and landmark points, in coordinates ``scale`` times those of ``image``
    (``image`` may be a reduced decode of the full picture)."""
    started = time.perf_counter()
    faces = [face.scaled(scale) for face in detector.detect(image)]
    return {
        "status": SUCCESS,
        "error": "",
        "runtime": time.perf_counter() - started,
        "backend": detector.name,
        "point_scheme": detector.point_scheme,
        "faces": [face.to_dict() for face in faces],
    }


def estimate_age_gender(
    image: RGBImage,
    detector: FaceDetector,
    estimator: AgeGenderEstimator,
    faces: list[DetectedFace] | None = None,
) -> dict[str, Any]:
    """Every face's box, age and gender, each with a confidence.

    ``faces`` are the landmark stage's detections when it shared them; without them the
    stage runs ``detector`` itself.
    """
    started = time.perf_counter()
    shared = faces is not None
    if faces is None:
        faces = detector.detect(image)
    estimates = estimator.estimate(image, faces)
    return {
        "status": SUCCESS,
        "error": "",
        "runtime": time.perf_counter() - started,
        "backend": estimator.name if shared else f"{detector.name}+{estimator.name}",
        "detection": "landmark stage" if shared else "own",
        "faces": [
            {
                "box": face.to_dict()["box"],
                "age": estimate.age,
                "age_confidence": estimate.age_confidence,
                "gender": estimate.gender,
                "gender_confidence": estimate.gender_confidence,
            }
            for face, estimate in zip(faces, estimates, strict=True)
        ],
    }
