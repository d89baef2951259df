"""What a request does, without gRPC: check the image, store it once, run the chord.

The servicers in ``servicers.py`` call these methods and map their exceptions to gRPC
status codes; tests and the benchmark can call them directly.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chord, group
from celery.canvas import Signature

from tasks import settings, store
from tasks.agegender import estimate_age_gender
from tasks.imaging import decode_image, image_key
from tasks.landmark import detect_landmarks
from tasks.storage import store_results

log = logging.getLogger(__name__)

STAGE_TASKS: dict[str, Any] = {"landmark": detect_landmarks, "agegender": estimate_age_gender}


class Pipeline:
    """Runs requests against the Celery workers and Redis named by ``config``."""

    def __init__(self, config: settings.Settings) -> None:
        self.config = config
        self.store = store.ImageStore(store.client(config.redis_url), config.image_ttl, config.result_ttl)

    def accept(self, data: bytes) -> str:
        """Check that ``data`` decodes as an image, store it under its key, return the key.

        Raises :class:`tasks.imaging.ImageError` before anything is stored.
        """
        decode_image(data, self.config.max_image_pixels)
        key = image_key(data)
        self.store.put_image(key, data)
        return key

    def process(self, data: bytes, timeout: float) -> dict[str, Any]:
        """Both stages in parallel, then storage: ``{"document": ..., "storage": ...}``."""
        key = self.accept(data)
        workflow = chord(group(detect_landmarks.s(key), estimate_age_gender.s(key)), store_results.s(key))
        return self._wait(workflow, key, timeout)

    def run_stage(self, stage: str, data: bytes, timeout: float) -> tuple[str, dict[str, Any]]:
        """One stage on its own; returns the key and the stage result it stored in Redis."""
        key = self.accept(data)
        self._wait(STAGE_TASKS[stage].s(key), key, timeout)
        result = self.store.get_stage_result(key, stage)
        if result is None:
            raise RuntimeError(f"the {stage} task finished but {store.stage_key(key, stage)} is not in Redis")
        return key, result

    def store_only(self, data: bytes, timeout: float) -> tuple[str, dict[str, Any]]:
        """The storage stage on its own, merging whatever stage results Redis holds."""
        key = self.accept(data)
        return key, self._wait(store_results.s([], key), key, timeout)

    def _wait(self, workflow: Signature, key: str, timeout: float) -> Any:
        """Send ``workflow`` and wait for its result, at most ``timeout`` seconds.

        Raises ``celery.exceptions.TimeoutError`` when it takes longer; the work itself
        goes on and still writes its results.
        """
        result = workflow.apply_async()
        log.debug("[%s] sent %s", key[:12], result.id)
        return result.get(timeout=timeout, interval=0.05)
