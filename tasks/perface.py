"""The Celery task of every per-face stage (``tasks/shared/graph.py``), one per queue, all alike."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks import app, models, stages
from tasks.shared import graph, settings
from tasks.worker_io import RETRY_POLICY, detected_faces, run_stage


def per_face_task(stage: graph.PerFaceStage) -> Task:
    """The task that runs ``stage`` on the faces the landmark stage stored for an image."""

    def estimate(key: str) -> dict[str, Any]:
        return run_stage(key, stage.name, lambda data: stages.per_face_from_bytes(
            data, models.face_detector(), models.estimator(stage.name), detected_faces(key), settings.load().max_image_pixels
        ))

    estimate.__doc__ = (
        f"Run the {stage.name} stage on the faces the landmark stage found in the image stored under "
        f"``key`` (detecting them itself when it has no successful result there); result in ``<key>:{stage.name}``."
    )
    return app.task(name=stage.task_name, **RETRY_POLICY)(estimate)


TASKS = {stage.name: per_face_task(stage) for stage in graph.PER_FACE_STAGES}
