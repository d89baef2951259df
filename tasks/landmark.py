"""Celery task of the ``landmark`` queue: face boxes and landmark points."""

from __future__ import annotations

from typing import Any

from tasks import app, models, settings, stages
from tasks.imaging import decode_reduced
from tasks.worker_io import RETRY_POLICY, run_stage


def _detect(data: bytes) -> dict[str, Any]:
    config = settings.load()
    # A large JPEG decodes at reduced size: detection scales it down to DETECT_MAX_SIDE anyway.
    image, scale = decode_reduced(data, config.max_image_pixels, config.detect_max_side)
    return stages.detect_landmarks(image, models.face_detector(), scale)


@app.task(name="tasks.landmark.detect_landmarks", **RETRY_POLICY)
def detect_landmarks(key: str) -> dict[str, Any]:
    """Detect faces in the image stored under ``key``; result in ``<key>:landmark``, where
    the per-face stages that run next read them."""
    return run_stage(key, "landmark", _detect)
