"""Celery task of the ``agegender`` queue: age and gender of every face."""

from __future__ import annotations

from typing import Any

from tasks import app, models, settings, stages
from tasks.imaging import decode_image
from tasks.worker_io import RETRY_POLICY, run_stage, shared_faces


def _estimate(key: str, data: bytes, run_id: str | None) -> dict[str, Any]:
    config = settings.load()
    image = decode_image(data, config.max_image_pixels)  # while the landmark stage detects
    faces = shared_faces(key, run_id, config.shared_detection_wait) if run_id else None
    return stages.estimate_age_gender(image, models.face_detector(), models.age_gender_estimator(), faces)


@app.task(name="tasks.agegender.estimate_age_gender", **RETRY_POLICY)
def estimate_age_gender(key: str, run_id: str | None = None) -> dict[str, Any]:
    """Estimate age and gender in the image stored under ``key``; result in ``<key>:agegender``.

    Within a chord (``run_id`` given) it uses the faces the landmark task of the same run
    found, rather than detecting them a second time; alone, or when that task fails or
    does not answer within ``SHARED_DETECTION_WAIT`` seconds, it detects them itself.
    """
    return run_stage(key, "agegender", lambda data: _estimate(key, data, run_id))
