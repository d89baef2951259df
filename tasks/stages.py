"""The work of each stage as plain functions: image in, JSON-ready dict out.

Celery tasks wrap these (see ``tasks/landmark.py`` and ``tasks/agegender.py``); tests
call them directly with real models and no broker.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from tasks import small_faces
from tasks.backends.base import DetectedFace, FaceDetector, PerFaceEstimator
from tasks.shared.document import FAILURE, SUCCESS
from tasks.shared.imaging import RGBImage, decode_reduced, image_size


def failed(error: str, runtime: float = 0.0) -> dict[str, Any]:
    """The result of a stage that could not run; the graph still reaches storage with it."""
    return {"status": FAILURE, "error": error, "runtime": runtime, "faces": []}


def landmark_result(image: RGBImage, detector: FaceDetector, scale: float = 1.0) -> dict[str, Any]:
    """Every face's box and landmark points, in coordinates ``scale`` times those of ``image``
    (``image`` may be a reduced decode of the full picture)."""
    started = time.perf_counter()
    return _landmarks(detector, [face.scaled(scale) for face in detector.detect(image)], started)


def _landmarks(detector: FaceDetector, faces: list[DetectedFace], started: float) -> dict[str, Any]:
    return {
        "status": SUCCESS,
        "error": "",
        "runtime": time.perf_counter() - started,
        "backend": detector.name,
        "point_scheme": detector.point_scheme,
        "faces": [face.to_dict() for face in faces],
    }


def decode_side(faces: list[DetectedFace], longer_side: int, face_side: int) -> int:
    """The longer side to decode a picture at for estimating ``faces`` (0: full size):
    halved while the smallest face stays at least ``face_side`` pixels across, down to
    an eighth (the scales a JPEG decodes at cheaply); an eighth when there is no face."""
    smallest = min((min(f.box.x2 - f.box.x1, f.box.y2 - f.box.y1) for f in faces), default=float("inf"))
    factor = 1
    while factor < 8 and smallest / (factor * 2) >= face_side:
        factor *= 2
    return 0 if factor == 1 else -(-longer_side // factor)


def per_face_result(
    image: RGBImage,
    detector: FaceDetector,
    estimator: PerFaceEstimator,
    faces: list[DetectedFace] | None = None,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Every face's box and what ``estimator`` says of it (age and gender, say).

    ``image`` may be a reduced decode, ``scale`` times smaller than the full picture,
    whose coordinates the boxes keep. ``faces`` are the landmark stage's detections
    when it stored them; without them the stage runs ``detector`` itself.
    """
    started = time.perf_counter()
    shared = faces is not None
    if faces is None:
        faces = [face.scaled(scale) for face in detector.detect(image)]
    estimates = estimator.estimate(image, [face.scaled(1 / scale) for face in faces])
    return {
        "status": SUCCESS,
        "error": "",
        "runtime": time.perf_counter() - started,
        "backend": estimator.name if shared else f"{detector.name}+{estimator.name}",
        "detection": "landmark stage" if shared else "own",
        "faces": [{"box": face.to_dict()["box"], **values(estimate)} for face, estimate in zip(faces, estimates, strict=True)],
    }


def values(estimate: Any) -> dict[str, Any]:
    """An estimator's answer for one face as JSON-ready values (a dataclass or a mapping)."""
    return dataclasses.asdict(estimate) if dataclasses.is_dataclass(estimate) else dict(estimate)


def landmarks_from_bytes(
    data: bytes, detector: FaceDetector, max_pixels: int, max_side: int, small_faces_side: int = 0
) -> dict[str, Any]:
    """:func:`landmark_result` on image bytes; a large JPEG decodes at reduced size,
    since detection scales it down to ``max_side`` anyway. When that finds a face near
    the detector's limit, the picture is looked at again, up to ``small_faces_side``
    pixels long, for the smaller faces around it (``tasks/small_faces.py``; 0: never)."""
    image, scale = decode_reduced(data, max_pixels, max_side)
    started = time.perf_counter()
    faces = [face.scaled(scale) for face in detector.detect(image)]
    longer = round(max(image.shape[:2]) * scale)
    side = small_faces.finer_side(faces, longer, max_side, small_faces_side)
    if side:
        larger = small_faces.resized(decode_reduced(data, max_pixels, side)[0], side)
        faces = small_faces.with_small_faces(detector, faces, larger, longer / max(larger.shape[:2]), max_side)
    return _landmarks(detector, faces, started)


def per_face_from_bytes(
    data: bytes, detector: FaceDetector, estimator: PerFaceEstimator, faces: list[DetectedFace] | None, max_pixels: int
) -> dict[str, Any]:
    """:func:`per_face_result` on image bytes, decoded no larger than ``faces`` need."""
    side = 0 if faces is None else decode_side(faces, max(image_size(data, max_pixels)), estimator.face_side)
    image, scale = decode_reduced(data, max_pixels, side)
    return per_face_result(image, detector, estimator, faces, scale)
