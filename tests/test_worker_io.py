"""How a stage runs inside a task: any failure becomes a stored Failure result, so the
chord always completes (against the session's real Redis, without a worker)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tasks import worker_io
from tests.conftest import RunningStack

KEY = "e" * 64


@pytest.fixture
def real_store(stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REDIS_URL", stack.redis_url)
    worker_io.image_store.cache_clear()
    yield
    worker_io.image_store.cache_clear()
    stack.redis.delete(KEY, f"{KEY}:landmark")


def test_a_model_that_raises_becomes_a_failure_result(stack: RunningStack, real_store: None) -> None:
    stack.redis.set(KEY, b"image bytes", ex=60)

    def broken_model(data: bytes) -> dict:
        assert data == b"image bytes"  # fetched from Redis for the stage
        raise RuntimeError("the network produced NaNs")

    summary = worker_io.run_stage(KEY, "landmark", broken_model)
    assert summary == {"stage": "landmark", "status": "Failure", "runtime": 0.0, "error": "RuntimeError: the network produced NaNs"}
    stored = json.loads(stack.redis.get(f"{KEY}:landmark"))
    assert stored["status"] == "Failure" and stored["faces"] == []


def test_an_expired_image_becomes_a_failure_result(stack: RunningStack, real_store: None) -> None:
    summary = worker_io.run_stage(KEY, "landmark", lambda data: pytest.fail("no image, no work"))
    assert summary["status"] == "Failure" and "not in Redis" in summary["error"]


def test_redis_errors_propagate_for_celery_to_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    worker_io.image_store.cache_clear()
    try:
        with pytest.raises(worker_io.RETRYABLE):
            worker_io.run_stage(KEY, "landmark", lambda data: {})
    finally:
        worker_io.image_store.cache_clear()


def test_shared_faces_wait_for_the_announcement(stack: RunningStack, real_store: None) -> None:
    import threading
    import time

    face = {"box": {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0, "score": 0.9}, "points": [[5.0, 6.0]]}
    store = worker_io.image_store()

    def landmark_stage_finishes() -> None:
        time.sleep(0.3)
        store.put_stage_result(KEY, "landmark", {"status": "Success", "faces": [face], "run_id": "run-7"})
        store.announce(KEY, "landmark", "run-7")

    threading.Thread(target=landmark_stage_finishes).start()
    started = time.monotonic()
    faces = worker_io.shared_faces(KEY, "run-7", wait=60)
    assert faces is not None and faces[0].to_dict() == face
    assert time.monotonic() - started < 30  # woken by the announcement, long before the limit
    assert not stack.redis.exists(f"{KEY}:landmark:ready:run-7")
    # A result of another run is not taken; with nothing announced the wait ends in failure.
    assert worker_io.shared_faces(KEY, "run-8", wait=0.2) is None
