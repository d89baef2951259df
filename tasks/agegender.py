"""Celery task of the ``agegender`` queue: age and gender of every face."""

from typing import Any

from tasks import app, models, stages
from tasks.worker_io import RETRYABLE, run_stage


@app.task(name="tasks.agegender.estimate_age_gender", autoretry_for=RETRYABLE, retry_backoff=1, max_retries=5)
def estimate_age_gender(key: str) -> dict[str, Any]:
    """Estimate age and gender in the image stored under ``key``; result in ``<key>:agegender``."""
    return run_stage(
        key,
        "agegender",
        lambda image: stages.estimate_age_gender(image, models.face_detector(), models.age_gender_estimator()),
    )
