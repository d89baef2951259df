"""Celery task of the ``landmark`` queue: face boxes and landmark points."""

from __future__ import annotations

from typing import Any

from tasks import app, models, stages
from tasks.shared import settings
from tasks.worker_io import RETRY_POLICY, run_stage


@app.task(name="tasks.landmark.detect_landmarks", **RETRY_POLICY)
def detect_landmarks(key: str) -> dict[str, Any]:
    """Detect faces in the image stored under ``key``; result in ``<key>:landmark``, where
    the per-face stages that run next read them."""
    config = settings.load()
    return run_stage(key, "landmark", lambda data: stages.landmarks_from_bytes(
        data, models.face_detector(), config.max_image_pixels, config.detect_max_side, config.small_faces_max_side
    ))
