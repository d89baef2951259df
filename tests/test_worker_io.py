"""How a stage runs inside a task: any failure becomes a stored Failure result, so the
chord always completes (against the session's real Redis, without a worker)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from tasks import worker_io
from tasks.shared import redis_store
from tests.conftest import RunningStack

KEY = "e" * 64


@pytest.fixture
def real_store(stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REDIS_URL", stack.redis_url)
    worker_io.image_store.cache_clear()
    yield
    worker_io.image_store.cache_clear()
    stack.redis.delete(KEY, *(f"{KEY}:{suffix}" for suffix in ("landmark", "agegender", "result", "running", "tasks")))
    stack.redis.zrem(redis_store.KEPT_RESULTS, KEY)


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


def test_per_face_stages_take_the_faces_the_landmark_stage_stored(stack: RunningStack, real_store: None) -> None:
    face = {"box": {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0, "score": 0.9}, "points": [[5.0, 6.0]]}
    store = worker_io.image_store()
    assert worker_io.detected_faces(KEY) is None  # nothing stored: the stage detects itself
    store.put_stage_result(KEY, "landmark", {"status": "Failure", "error": "boom", "faces": []})
    assert worker_io.detected_faces(KEY) is None  # a failed detection is not "no faces"
    store.put_stage_result(KEY, "landmark", {"status": "Success", "error": "", "faces": [face]})
    faces = worker_io.detected_faces(KEY)
    assert faces is not None and [f.to_dict() for f in faces] == [face]


def test_a_run_releases_only_its_own_claim(stack: RunningStack, real_store: None) -> None:
    store = worker_io.image_store()
    assert store.claim_run(KEY, "run-1", ttl=30) is None
    assert store.claim_run(KEY, "run-2", ttl=30) == "run-1"  # the run under way is joined
    store.release_run(KEY, "run-2")  # not its claim: kept
    assert stack.redis.get(f"{KEY}:running") == b"run-1"
    store.release_run(KEY, "run-1")
    assert not stack.redis.exists(f"{KEY}:running")


def test_a_runs_tasks_are_noted_once_while_claimed_and_replaced_once(stack: RunningStack, real_store: None) -> None:
    store = worker_io.image_store()
    assert not store.note_run_tasks(KEY, "run-1", '{"steps": 0}')  # no claim: nothing noted
    assert store.claim_run(KEY, "run-1", ttl=30) is None and store.run_claim(KEY) == "run-1"
    assert not store.note_run_tasks(KEY, "run-2", '{"steps": 0}')  # another run's claim
    assert store.note_run_tasks(KEY, "run-1", '{"steps": 1}')
    assert not store.note_run_tasks(KEY, "run-1", '{"steps": 0}')  # sent once, by one facade
    assert store.run_tasks(KEY) == '{"steps": 1}' and 25 < stack.redis.ttl(f"{KEY}:tasks") <= 30  # the claim's expiry
    stack.redis.expire(f"{KEY}:tasks", 20)
    # Two facades that read the same note and found the run lost: only the first replaces it.
    assert store.replace_run_tasks(KEY, '{"steps": 1}', '{"steps": 2}')
    assert not store.replace_run_tasks(KEY, '{"steps": 1}', '{"steps": 3}')
    assert store.run_tasks(KEY) == '{"steps": 2}' and 15 < stack.redis.ttl(f"{KEY}:tasks") <= 20  # its expiry kept
    store.release_run(KEY, "run-2")  # another run's release leaves both
    assert store.run_tasks(KEY) == '{"steps": 2}'
    store.release_run(KEY, "run-1")
    assert store.run_tasks(KEY) is None and not stack.redis.exists(f"{KEY}:running")


def test_a_finished_run_lets_its_image_and_stage_results_expire_soon(stack: RunningStack, real_store: None) -> None:
    store = worker_io.image_store()
    stages = ("landmark", "agegender")

    def stored() -> None:
        store.put_image(KEY, b"image bytes")
        for stage in stages:
            store.put_stage_result(KEY, stage, {"status": "Success", "error": "", "faces": []})
        store.put_outcome(KEY, {"document": {}, "storage": {}})

    def ttls() -> list[int]:
        return [stack.redis.ttl(KEY), *(stack.redis.ttl(f"{KEY}:{stage}") for stage in stages)]

    stored()
    assert min(ttls()) > 60
    assert store.expire_run_inputs(KEY, "run-1", stages, 5)  # no claim left: the run's facade is done
    assert all(0 < ttl <= 5 for ttl in ttls())
    assert stack.redis.ttl(f"{KEY}:result") > 60  # the merged outcome keeps RESULT_TTL
    assert store.expire_run_inputs(KEY, "run-1", stages, 30)  # never lengthened
    assert all(0 < ttl <= 5 for ttl in ttls())

    stored()
    assert store.claim_run(KEY, "run-1", ttl=30) is None
    assert store.expire_run_inputs(KEY, "run-1", stages, 5)  # its own claim, its facade still waiting
    assert all(0 < ttl <= 5 for ttl in ttls())

    stored()
    stack.redis.set(f"{KEY}:running", "run-2")  # a newer run of the same bytes needs them
    assert not store.expire_run_inputs(KEY, "run-1", stages, 5)
    assert min(ttls()) > 60


def test_kept_results_are_noted_oldest_first_until_they_expire(stack: RunningStack, real_store: None) -> None:
    store = redis_store.ImageStore(stack.redis, image_ttl=60, result_ttl=1)
    older = "d" * 64
    try:
        store.put_outcome(older, {"document": {}, "storage": {}})
        store.put_outcome(KEY, {"document": {}, "storage": {}})
        noted = [key.decode() for key in stack.redis.zrange(redis_store.KEPT_RESULTS, 0, -1)]
        assert noted.index(older) < noted.index(KEY)
        time.sleep(1.1)
        store.put_outcome(KEY, {"document": {}, "storage": {}})  # the older one has expired: its note goes
        assert stack.redis.zscore(redis_store.KEPT_RESULTS, older) is None
        assert stack.redis.zscore(redis_store.KEPT_RESULTS, KEY) is not None
        assert store.drop_oldest_outcomes(1) == 1
        assert not stack.redis.exists(f"{KEY}:result")
    finally:
        stack.redis.delete(f"{older}:result")
        stack.redis.zrem(redis_store.KEPT_RESULTS, older)


def test_past_kept_results_max_the_oldest_answers_go(stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> None:
    own_db = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/9")  # other tests' answers stay out
    keys = [f"{i:064x}" for i in range(1, 6)]
    try:
        store = redis_store.ImageStore(own_db, image_ttl=60, result_ttl=600, kept_results_max=3)
        for key in keys:
            store.put_outcome(key, {"document": {}, "storage": {}})
        assert [key.decode() for key in own_db.zrange(redis_store.KEPT_RESULTS, 0, -1)] == keys[2:]
        assert [bool(own_db.exists(f"{key}:result")) for key in keys] == [False, False, True, True, True]

        unlimited = redis_store.ImageStore(own_db, image_ttl=60, result_ttl=600)
        for key in keys[:2]:
            unlimited.put_outcome(key, {"document": {}, "storage": {}})
        assert own_db.zcard(redis_store.KEPT_RESULTS) == 5

        monkeypatch.setenv("KEPT_RESULTS_MAX", "7")  # what the storage worker's store is told
        worker_io.image_store.cache_clear()
        assert worker_io.image_store().kept_results_max == 7
    finally:
        worker_io.image_store.cache_clear()
        own_db.flushdb()
