"""Celery task of the ``agegender`` queue: age and gender of every face."""

from __future__ import annotations

from typing import Any

from tasks import app, models, settings, stages
from tasks.worker_io import RETRY_POLICY, detected_faces, run_stage


@app.task(name="tasks.agegender.estimate_age_gender", **RETRY_POLICY)
def estimate_age_gender(key: str) -> dict[str, Any]:
    """Estimate age and gender of the faces the landmark stage found in the image stored
    under ``key`` (detecting them here when it has no successful result for that image);
    result in ``<key>:agegender``."""
    return run_stage(key, "agegender", lambda data: stages.age_gender_from_bytes(
        data, models.face_detector(), models.age_gender_estimator(), detected_faces(key), settings.load().max_image_pixels
    ))
