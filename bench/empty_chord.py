"""A Celery app with the service's topology and settings, but tasks that do nothing.

    celery -A bench.empty_chord worker -Q landmark      # as bench/floor.py starts it

Same broker and result store (``REDIS_URL``), same ``celeryconfig`` (JSON, late acks,
prefetch 1, no events), same three queues; no models are loaded. What a chord of these
costs is what Celery and Redis cost the service per image before any of its own work.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chord, group
from celery.result import AsyncResult

app = Celery("empty_chord")
app.config_from_object("celeryconfig")
app.conf.imports = ()  # not the service's task modules: nothing loads a model


@app.task(name="bench.empty_chord.landmark", queue="landmark")
def landmark(key: str) -> dict[str, Any]:
    return {"stage": "landmark", "key": key}


@app.task(name="bench.empty_chord.agegender", queue="agegender")
def agegender(key: str) -> dict[str, Any]:
    return {"stage": "agegender", "key": key}


@app.task(name="bench.empty_chord.storage", queue="storage")
def storage(summaries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {"key": key, "stages": [summary["stage"] for summary in summaries]}


def send(key: str) -> AsyncResult:
    """The service's chord shape: two stage tasks in parallel, then the storage callback."""
    return chord(group(landmark.s(key), agegender.s(key)), storage.s(key)).apply_async()
