"""A Celery app with the service's task graph and settings, but tasks that do nothing.

    celery -A bench.empty_chord worker -Q landmark      # as bench/floor.py starts it

Same broker and result store (``REDIS_URL``), same ``celeryconfig`` (JSON, late acks,
prefetch 1, no events), same queues, same task names and the same graph
(``tasks/shared/graph.py``: landmark, then the per-face stages, then storage); no
models are loaded. What one run of it costs is what Celery and Redis cost the service
per image before any of its own work.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, uuid
from celery.result import AsyncResult

from tasks.shared import graph

app = Celery("empty_chord")
app.config_from_object("celeryconfig")
app.conf.imports = ()  # not the service's task modules: nothing loads a model


@app.task(name=graph.TASK_NAMES["landmark"])
def landmark(key: str) -> dict[str, Any]:
    return {"stage": "landmark", "key": key}


@app.task(name=graph.TASK_NAMES["agegender"])
def agegender(key: str) -> dict[str, Any]:
    return {"stage": "agegender", "key": key}


@app.task(name=graph.TASK_NAMES["storage"])
def storage(summaries: list[dict[str, Any]] | dict[str, Any], key: str, annotate: bool = False) -> dict[str, Any]:
    summaries = summaries if isinstance(summaries, list) else [summaries]  # a chain passes one
    return {"key": key, "stages": [summary["stage"] for summary in summaries]}


def send(key: str) -> AsyncResult:
    """One run of the service's graph; the result is the storage callback's."""
    return graph.workflow(app, key, False, uuid()).apply_async()
