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


def _prepared(model):
    model.prepare()
    return model


def _idle_threads() -> int | None:
    """``IDLE_THREADS`` when it is more than ``ORT_THREADS``, else ``None`` (no second model)."""
    config = settings.load()
    return config.idle_threads if config.idle_threads > config.ort_threads else None


@cache
def face_detector() -> FaceDetector:
    return _prepared(router.face_detector(settings.load()))


@cache
def age_gender_estimator() -> AgeGenderEstimator:
    return _prepared(router.age_gender_estimator(settings.load()))


# The same models allowed IDLE_THREADS cores, for a task that has the machine to itself
# (tasks/cpu_claims.py): detection on more onnxruntime threads, age/gender with its two
# views side by side. Under load the ones above run instead, which cost less CPU.


@cache
def idle_face_detector() -> FaceDetector | None:
    threads = _idle_threads()
    return None if threads is None else _prepared(router.face_detector(settings.load(), threads=threads))


@cache
def idle_age_gender_estimator() -> AgeGenderEstimator | None:
    # More cores help age/gender only by running its two views side by side: without the
    # mirrored view (AGEGENDER_FLIP=0) a second estimator would be a copy for nothing.
    threads, config = _idle_threads(), settings.load()
    if threads is None or not config.agegender_flip:
        return None
    return _prepared(router.age_gender_estimator(config, threads=threads))


def detector_for(alone: bool) -> FaceDetector:
    """The detector a task should use: the one on more cores only when ``alone``."""
    idle = idle_face_detector() if alone else None
    return idle if idle is not None else face_detector()


def estimator_for(alone: bool) -> AgeGenderEstimator:
    """The estimator a task should use: the one on more cores only when ``alone``."""
    idle = idle_age_gender_estimator() if alone else None
    return idle if idle is not None else age_gender_estimator()


# Which models a worker needs, by the queue it consumes.
MODELS_BY_QUEUE = {
    "landmark": (face_detector, idle_face_detector),
    "agegender": (face_detector, age_gender_estimator, idle_age_gender_estimator),
    "storage": (),
}
