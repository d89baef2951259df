"""Celery task of the ``landmark`` queue: face boxes and landmark points."""

from __future__ import annotations

from typing import Any

from tasks import app, models, settings, stages
from tasks.imaging import decode_reduced
from tasks.worker_io import RETRY_POLICY, image_store, run_stage


def _detect(data: bytes, run_id: str | None) -> dict[str, Any]:
    config = settings.load()
    # A large JPEG decodes at reduced size: detection scales it down to DETECT_MAX_SIDE anyway.
    image, scale = decode_reduced(data, config.max_image_pixels, config.detect_max_side)
    result = stages.detect_landmarks(image, models.face_detector(), scale)
    return {**result, "run_id": run_id}


@app.task(name="tasks.landmark.detect_landmarks", **RETRY_POLICY)
def detect_landmarks(key: str, run_id: str | None = None) -> dict[str, Any]:
    """Detect faces in the image stored under ``key``; result in ``<key>:landmark``.

    ``run_id`` (the chord's) is written with the result, so that the age/gender task of
    the same run can use these detections instead of detecting faces again.
    """
    summary = run_stage(key, "landmark", lambda data: _detect(data, run_id))
    if run_id is not None:
        image_store().announce(key, "landmark", run_id)  # wakes the age/gender task of this run
    return summary
