"""What every task of a worker process shares: its Redis store and how it runs a stage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from tasks import stages
from tasks.shared import logs, redis_store, settings
from tasks.backends.base import DetectedFace
from tasks.shared.imaging import ImageError

log = logging.getLogger(__name__)

# Errors worth retrying: Redis unreachable for a moment. Everything else is final.
RETRYABLE = redis_store.UNREACHABLE
# How every task retries them: Celery's own retries, with backoff.
RETRY_POLICY: dict[str, Any] = {"autoretry_for": RETRYABLE, "retry_backoff": 1, "max_retries": 5}


@cache
def image_store() -> redis_store.ImageStore:
    config = settings.load()
    return redis_store.ImageStore(
        redis_store.client(config.redis_url), config.image_ttl, config.result_ttl, config.kept_results_max
    )


def detected_faces(key: str) -> list[DetectedFace] | None:
    """The faces the landmark stage stored for ``key``; ``None`` when it has no successful
    result there (a stage called on its own, or a failed detection)."""
    result = image_store().get_stage_result(key, "landmark")
    if result is None or result["status"] != stages.SUCCESS:
        return None
    return [DetectedFace.from_dict(face) for face in result["faces"]]


def run_stage(key: str, stage: str, work: Callable[[bytes], dict[str, Any]]) -> dict[str, Any]:
    """Run one stage on the image stored under ``key`` and store its result in Redis.

    A failure of the image or the model becomes a ``Failure`` result (so the graph
    still completes and the response says which stage failed); Redis errors propagate
    so that Celery retries the task. Returns a small summary for the next task.
    """
    logs.request_key.set(key)
    try:
        result = work(image_store().get_image(key))  # fetched once; ``work`` decodes once
    except RETRYABLE:
        raise
    except (redis_store.ImageMissing, ImageError) as error:
        result = stages.failed(str(error))
    except Exception as error:  # a model failure must not leave the graph without a result
        log.exception("%s stage failed for %s", stage, key)
        result = stages.failed(f"{type(error).__name__}: {error}")
    image_store().put_stage_result(key, stage, result)
    log.info(
        "[%s] %s: %s, faces: %d, Runtime: %.3f",
        key[:12], stage, result["status"], len(result["faces"]), result["runtime"],
    )
    return {"stage": stage, "status": result["status"], "runtime": result["runtime"], "error": result["error"]}
