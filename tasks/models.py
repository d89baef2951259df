"""The models of this worker process: built on first use, once, then reused.

``worker_process_init`` (see ``tasks/worker_setup.py``) calls these at worker start so
that the first task does not pay for loading and warming up, and so that a missing
model fails the worker at start rather than on its first task.
"""

from __future__ import annotations

from functools import cache

from tasks import settings
from tasks.backends import router
from tasks.backends.base import AgeGenderEstimator, FaceDetector


@cache
def face_detector() -> FaceDetector:
    detector = router.face_detector(settings.load())
    detector.prepare()
    return detector


@cache
def age_gender_estimator() -> AgeGenderEstimator:
    estimator = router.age_gender_estimator(settings.load())
    estimator.prepare()
    return estimator


# Which models a worker needs, by the queue it consumes.
MODELS_BY_QUEUE = {
    "landmark": (face_detector,),
    "agegender": (face_detector, age_gender_estimator),
    "storage": (),
}
