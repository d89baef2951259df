"""Celery task of the ``landmark`` queue: face boxes and landmark points."""

from typing import Any

from tasks import app, models, stages
from tasks.worker_io import RETRYABLE, run_stage


@app.task(name="tasks.landmark.detect_landmarks", autoretry_for=RETRYABLE, retry_backoff=1, max_retries=5)
def detect_landmarks(key: str) -> dict[str, Any]:
    """Detect faces in the image stored under ``key``; result in ``<key>:landmark``."""
    return run_stage(key, "landmark", lambda image: stages.detect_landmarks(image, models.face_detector()))
