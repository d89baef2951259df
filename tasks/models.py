"""The models of this worker process: built on first use, once, then reused.

``worker_process_init`` (see ``tasks/worker_setup.py``) calls these at worker start so
that the first task does not pay for loading and warming up, and so that a missing
model fails the worker at start rather than on its first task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from tasks.shared import graph, settings
from tasks.backends import router
from tasks.backends.base import FaceDetector


@cache
def face_detector() -> FaceDetector:
    detector = router.build_face_detector(settings.load())
    detector.prepare()
    return detector


@cache
def estimator(stage: str) -> Any:
    """The prepared estimator of the per-face stage ``stage``, built by its ``module:function``."""
    module, _, function = graph.per_face_stage(stage).estimator.partition(":")
    model = getattr(importlib.import_module(module), function)(settings.load())
    model.prepare()
    return model


def loaders(queue: str) -> tuple[Callable[[], Any], ...]:
    """What a worker consuming ``queue`` loads at start: every per-face stage also needs the
    detector, for images the landmark stage has no result for."""
    if queue == graph.DETECTION:
        return (face_detector,)
    if queue in graph.PER_FACE:
        return (face_detector, lambda: estimator(queue))
    return ()
