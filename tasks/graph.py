"""The shape of one request's work, by task name only, so the facade imports no model:

    landmark  ──>  agegender (and any other per-face stage, side by side)  ──>  storage

The landmark task finds the faces and stores them; each per-face stage reads them from
Redis and runs on its own queue; ``storage`` merges every stage's result into
``output/``. With several per-face stages Celery makes them a chord whose callback is
``storage``; with one, as now, a plain chain, which saves the chord's bookkeeping.
Queues are named after the stages.
"""

from __future__ import annotations

from celery import Celery, chain, group
from celery.canvas import Signature

DETECTION = "landmark"
PER_FACE = ("agegender",)
STORAGE = "storage"
QUEUES = (DETECTION, *PER_FACE, STORAGE)

TASK_NAMES = {
    "landmark": "tasks.landmark.detect_landmarks",
    "agegender": "tasks.agegender.estimate_age_gender",
    "storage": "tasks.storage.store_results",
}


def stage(app: Celery, name: str, key: str) -> Signature:
    """One stage's task for the image stored under ``key`` (ignores what ran before it)."""
    return app.signature(TASK_NAMES[name], args=(key,), immutable=True)


def storage(app: Celery, key: str, annotate: bool = False) -> Signature:
    """The storage task; after the stages it receives their summaries first."""
    return app.signature(TASK_NAMES[STORAGE], args=(key, annotate))


def workflow(app: Celery, key: str, annotate: bool, run_id: str) -> Signature:
    """Detection, then the per-face stages side by side, then ``storage`` with the task
    id ``run_id``: the id whose result the facade waits for."""
    per_face = group(stage(app, name, key) for name in PER_FACE)  # Celery unrolls a group of one
    return chain(stage(app, DETECTION, key), per_face, storage(app, key, annotate).set(task_id=run_id))
