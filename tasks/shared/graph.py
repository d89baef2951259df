"""The shape of one request's work, by task name only, so the facade imports no model:

    landmark  ──>  agegender (and any other per-face stage, side by side)  ──>  storage

The landmark task finds the faces and stores them; each per-face stage reads them from
Redis and runs on its own queue; ``storage`` merges every stage's result into
``output/``. With several per-face stages Celery makes them a chord whose callback is
``storage``; with one, as now, a plain chain, which saves the chord's bookkeeping.
Queues are named after the stages.

A per-face stage is data: a name and the ``module:function`` that builds its estimator
(``PER_FACE_STAGES`` below, plus any named by ``STAGE_PLUGINS``). Only workers import
the estimator; the task, the merge and the storage are the same for every stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery import Celery, chain, group
from celery.canvas import Signature


@dataclass(frozen=True)
class PerFaceStage:
    """A stage that estimates something of every face the landmark stage found."""

    name: str  # its queue, its Redis result ``<key>:<name>`` and its entry in the output's "stages"
    estimator: str  # "module:function" that builds its estimator from the Settings (workers only)
    task: str = ""  # its Celery task's name; ``tasks.<name>.estimate`` unless given

    @property
    def task_name(self) -> str:
        return self.task or f"tasks.{self.name}.estimate"


BUILT_IN = (
    PerFaceStage("agegender", "tasks.backends.router:build_age_gender_estimator", "tasks.agegender.estimate_age_gender"),
)


def plugins(setting: str) -> tuple[PerFaceStage, ...]:
    """Stages from ``STAGE_PLUGINS``: comma-separated ``name=module:function`` entries."""
    stages = []
    for entry in filter(None, (part.strip() for part in setting.split(","))):
        name, _, estimator = entry.partition("=")
        if not name.isidentifier() or ":" not in estimator:
            raise ValueError(f"STAGE_PLUGINS entry {entry!r} is not name=module:function")
        stages.append(PerFaceStage(name, estimator.strip()))
    return tuple(stages)


DETECTION = "landmark"
STORAGE = "storage"
PER_FACE_STAGES = BUILT_IN + plugins(os.environ.get("STAGE_PLUGINS", ""))
PER_FACE = tuple(stage.name for stage in PER_FACE_STAGES)
QUEUES = (DETECTION, *PER_FACE, STORAGE)

TASK_NAMES = {
    "landmark": "tasks.landmark.detect_landmarks",
    **{stage.name: stage.task_name for stage in PER_FACE_STAGES},
    "storage": "tasks.storage.store_results",
}


READ_RESULT = "tasks.storage.read_result"  # on the storage queue: a result read back from OUTPUT_DIR


def per_face_stage(name: str) -> PerFaceStage:
    return next(stage for stage in PER_FACE_STAGES if stage.name == name)


def stage(app: Celery, name: str, key: str) -> Signature:
    """One stage's task for the image stored under ``key`` (ignores what ran before it)."""
    return app.signature(TASK_NAMES[name], args=(key,), immutable=True)


def storage(app: Celery, key: str, annotate: bool = False) -> Signature:
    """The storage task; after the stages it receives their summaries first."""
    return app.signature(TASK_NAMES[STORAGE], args=(key, annotate))


def read_result(app: Celery, key: str) -> Signature:
    """The storage workers' reading of ``key``'s outcome from ``OUTPUT_DIR``."""
    return app.signature(READ_RESULT, args=(key,))


def workflow(app: Celery, key: str, annotate: bool, run_id: str) -> Signature:
    """Detection, then the per-face stages side by side, then ``storage`` with the task
    id ``run_id``: the id whose result the facade waits for."""
    per_face = group(stage(app, name, key) for name in PER_FACE)  # Celery unrolls a group of one
    return chain(stage(app, DETECTION, key), per_face, storage(app, key, annotate).set(task_id=run_id))
