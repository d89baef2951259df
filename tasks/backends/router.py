"""Picks each stage's backend from the configuration (``LANDMARK_BACKEND``,
``AGEGENDER_BACKEND``): the one place that knows every backend class."""

from __future__ import annotations

from collections.abc import Callable

from tasks.backends.base import AgeGenderEstimator, FaceDetector
from tasks.backends.centerface import CenterFace
from tasks.backends.cydral import CydralAgeGender
from tasks.settings import Settings


class UnknownBackend(ValueError):
    """The configuration names a backend that does not exist."""


def _embedded_detector(config: Settings) -> FaceDetector:
    return CenterFace(threads=config.ort_threads, max_side=config.detect_max_side, threshold=config.detect_threshold)


def _embedded_estimator(config: Settings) -> AgeGenderEstimator:
    return CydralAgeGender()


DETECTORS: dict[str, Callable[[Settings], FaceDetector]] = {"embedded": _embedded_detector}
ESTIMATORS: dict[str, Callable[[Settings], AgeGenderEstimator]] = {"embedded": _embedded_estimator}


def _pick(table: dict, name: str, variable: str):
    try:
        return table[name]
    except KeyError:
        raise UnknownBackend(f"{variable}={name!r} is not a backend; choose one of {', '.join(sorted(table))}") from None


def face_detector(config: Settings) -> FaceDetector:
    """The landmark stage's detector (not prepared yet)."""
    return _pick(DETECTORS, config.landmark_backend, "LANDMARK_BACKEND")(config)


def age_gender_estimator(config: Settings) -> AgeGenderEstimator:
    """The age/gender stage's estimator (not prepared yet)."""
    return _pick(ESTIMATORS, config.agegender_backend, "AGEGENDER_BACKEND")(config)
