"""Picks each stage's backend from the configuration (``LANDMARK_BACKEND``,
``AGEGENDER_BACKEND``): the one place that knows every backend class."""

from __future__ import annotations

from collections.abc import Callable

from tasks.backends.base import AgeGenderEstimator, FaceDetector
from tasks.backends.centerface import CenterFace
from tasks.backends.cydral import CydralAgeGender
from tasks.backends.dlib68 import Dlib68Landmarks
from tasks.backends.faceres import FaceResAgeGender
from tasks.backends.insightface_pack import InsightFaceAgeGender, InsightFaceDetector
from tasks.backends.wrappers import Abstaining, Mirrored
from tasks.shared.settings import Settings


class UnknownBackend(ValueError):
    """The configuration names a backend that does not exist."""


def _embedded_detector(config: Settings, threads: int) -> FaceDetector:
    return CenterFace(threads=threads, max_side=config.detect_max_side, threshold=config.detect_threshold, bf16=config.detect_bf16)


def _embedded_estimator(config: Settings, threads: int) -> AgeGenderEstimator:
    return CydralAgeGender(threads=threads, bf16=config.agegender_bf16)


def _faceres_estimator(config: Settings, threads: int) -> AgeGenderEstimator:
    return FaceResAgeGender(threads=threads)


def _insightface_detector(config: Settings, threads: int) -> FaceDetector:
    # The pack gives 106 points (2d106det) or SCRFD's 5; other counts are left to
    # whatever refines the detector's faces.
    return InsightFaceDetector(
        config.insightface_home,
        config.insightface_pack,
        points=106 if config.landmark_points == 106 else 5,
        threads=threads,
        max_side=config.detect_max_side,
        threshold=config.detect_threshold,
    )


def _insightface_estimator(config: Settings, threads: int) -> AgeGenderEstimator:
    return InsightFaceAgeGender(config.insightface_home, config.insightface_pack, threads=threads)


DETECTORS: dict[str, Callable[[Settings, int], FaceDetector]] = {
    "embedded": _embedded_detector,
    "insightface": _insightface_detector,
}
ESTIMATORS: dict[str, Callable[[Settings, int], AgeGenderEstimator]] = {
    "embedded": _embedded_estimator,
    "faceres": _faceres_estimator,
    "insightface": _insightface_estimator,
}


def _pick(table: dict, name: str, variable: str):
    try:
        return table[name]
    except KeyError:
        raise UnknownBackend(f"{variable}={name!r} is not a backend; choose one of {', '.join(sorted(table))}") from None


POINTS = {"embedded": (5, 68), "insightface": (5, 68, 106)}


def build_face_detector(config: Settings) -> FaceDetector:
    """The landmark stage's detector (not prepared yet), with 68 dlib points per face
    when ``LANDMARK_POINTS=68``; its sessions use ``ORT_THREADS`` threads."""
    build = _pick(DETECTORS, config.landmark_backend, "LANDMARK_BACKEND")
    detector = build(config, config.ort_threads)
    allowed = POINTS.get(config.landmark_backend, (5,))
    if config.landmark_points not in allowed:
        raise UnknownBackend(
            f"LANDMARK_POINTS={config.landmark_points} is not offered by LANDMARK_BACKEND="
            f"{config.landmark_backend}; choose one of {', '.join(map(str, allowed))}"
        )
    return Dlib68Landmarks(detector) if config.landmark_points == 68 else detector


def build_age_gender_estimator(config: Settings) -> AgeGenderEstimator:
    """The age/gender stage's estimator (not prepared yet) on ``ORT_THREADS`` threads;
    averaged over a mirrored view when ``AGEGENDER_FLIP=1``, and saying ``Unknown``
    below ``MIN_GENDER_CONFIDENCE`` when that is above 0 (both off by default)."""
    estimator = _pick(ESTIMATORS, config.agegender_backend, "AGEGENDER_BACKEND")(config, config.ort_threads)
    if config.agegender_flip:
        estimator = Mirrored(estimator)
    return Abstaining(estimator, config.min_gender_confidence) if config.min_gender_confidence > 0 else estimator
