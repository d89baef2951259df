"""The Redis layout shared by the facade and the workers.

Keys (``<key>`` is the SHA-256 hex of the image bytes):

- ``<key>``: the image bytes, written once by the facade, expiring after ``IMAGE_TTL``.
- ``<key>:landmark``, ``<key>:agegender``: each stage's JSON result, expiring after
  ``RESULT_TTL``.

Celery's own keys (``celery-task-meta-*``, the queues) live in the same database.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import redis

STAGES = ("landmark", "agegender")


class ImageMissing(LookupError):
    """The image is not (or no longer) in Redis: never stored, or expired."""


def stage_key(key: str, stage: str) -> str:
    """Where a stage writes its result for an image."""
    return f"{key}:{stage}"


@cache
def client(url: str) -> redis.Redis:
    """One connection pool per process and URL (thread-safe)."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)


class ImageStore:
    """Reads and writes images and stage results in Redis."""

    def __init__(self, connection: redis.Redis, image_ttl: int, result_ttl: int) -> None:
        self.redis = connection
        self.image_ttl = image_ttl
        self.result_ttl = result_ttl

    def put_image(self, key: str, data: bytes) -> None:
        """Store the image bytes (again: same key, same bytes) and restart their expiry."""
        self.redis.set(key, data, ex=self.image_ttl)

    def get_image(self, key: str) -> bytes:
        data = self.redis.get(key)
        if data is None:
            raise ImageMissing(f"image {key} is not in Redis (expired or never stored)")
        return data

    def put_stage_result(self, key: str, stage: str, result: dict[str, Any]) -> None:
        self.redis.set(stage_key(key, stage), json.dumps(result), ex=self.result_ttl)

    def get_stage_result(self, key: str, stage: str) -> dict[str, Any] | None:
        raw = self.redis.get(stage_key(key, stage))
        return None if raw is None else json.loads(raw)
