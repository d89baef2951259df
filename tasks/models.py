"""The models of this worker process: built on first use, once, then reused.

``worker_process_init`` (see ``tasks/worker_setup.py``) calls these at worker start so
that the first task does not pay for loading and warming up.
"""

from __future__ import annotations

from functools import cache

from tasks import settings
from tasks.backends.base import AgeGenderEstimator, FaceDetector
from tasks.backends.centerface import CenterFace
from tasks.backends.cydral import CydralAgeGender


@cache
def face_detector() -> FaceDetector:
    config = settings.load()
    detector = CenterFace(
        threads=config.ort_threads,
        max_side=config.detect_max_side,
        threshold=config.detect_threshold,
    )
    detector.prepare()
    return detector


@cache
def age_gender_estimator() -> AgeGenderEstimator:
    estimator = CydralAgeGender()
    estimator.prepare()
    return estimator


# Which models a worker needs, by the queue it consumes.
MODELS_BY_QUEUE = {
    "landmark": (face_detector,),
    "agegender": (face_detector, age_gender_estimator),
    "storage": (),
}
