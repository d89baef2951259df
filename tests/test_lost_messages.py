"""grpc_facade/lost_messages.py against a real Redis (a database of its own on the test
stack's server, so the stack's own queues and ``unacked`` hash stay out of it)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery, uuid
from celery.result import AsyncResult, GroupResult

from grpc_facade.lost_messages import SCAN_LIMIT, lost, message_exists, task_ids, unfinished
from tests.conftest import RunningStack

QUEUES = ("lost-test-detect", "lost-test-estimate")


@pytest.fixture
def own_db(stack: RunningStack) -> Iterator[str]:
    url = stack.redis_url.rsplit("/", 1)[0] + "/13"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    gc.collect()  # results unsubscribe when collected: while Redis is still there
    client.flushdb()


def message(task_id: str) -> bytes:
    """A message as kombu's Redis transport stores one: the task id among its headers."""
    return json.dumps({"body": "W10=", "headers": {"id": task_id, "task": "tasks.x"}, "properties": {}}).encode()


def test_a_message_is_found_in_its_queue_or_with_a_worker(own_db: str) -> None:
    client = redis.Redis.from_url(own_db)
    waiting, held, gone = uuid(), uuid(), uuid()
    client.lpush(QUEUES[1], message(uuid()), message(waiting))
    client.hset("unacked", "delivery-tag-1", json.dumps([json.loads(message(held)), "", QUEUES[0]]))
    assert message_exists(client, QUEUES, waiting) is True
    assert message_exists(client, QUEUES, held) is True
    assert message_exists(client, QUEUES, gone) is False


def test_a_queue_too_long_to_search_leaves_the_answer_open(own_db: str) -> None:
    client = redis.Redis.from_url(own_db)
    client.lpush(QUEUES[0], *(message(uuid()) for _ in range(SCAN_LIMIT + 1)))
    assert message_exists(client, QUEUES, uuid()) is None


def test_a_runs_task_ids_step_by_step(own_db: str) -> None:
    app = Celery(broker=own_db, backend=own_db)
    detect, first, second, store = uuid(), uuid(), uuid(), uuid()
    stages = GroupResult(uuid(), [AsyncResult(first, app=app), AsyncResult(second, app=app)], app=app,
                         parent=AsyncResult(detect, app=app))
    assert task_ids(AsyncResult(store, app=app, parent=stages)) == [[detect], [first, second], [store]]
    assert task_ids(AsyncResult(store, app=app)) == [[store]]


def test_the_first_unfinished_step_of_a_run(own_db: str) -> None:
    app = Celery(broker=own_db, backend=own_db)
    detect, estimate, store = uuid(), uuid(), uuid()
    run = [[detect], [estimate], [store]]
    assert unfinished(app, run) == [detect]
    app.backend.store_result(detect, {"status": "Success"}, "SUCCESS")
    assert unfinished(app, run) == [estimate]
    app.backend.store_result(estimate, {"status": "Success"}, "SUCCESS")
    app.backend.store_result(store, {"status": "Success"}, "SUCCESS")
    assert unfinished(app, run) == []


def test_a_failed_step_is_not_taken_for_a_lost_one(own_db: str) -> None:
    app = Celery(broker=own_db, backend=own_db)
    detect, estimate = uuid(), uuid()
    app.backend.store_result(detect, ValueError("boom"), "FAILURE")
    assert unfinished(app, [[detect], [estimate]]) == []
    assert not lost(redis.Redis.from_url(own_db), QUEUES, app, [[detect], [estimate]])


def test_side_by_side_stages_wait_together(own_db: str) -> None:
    app = Celery(broker=own_db, backend=own_db)
    detect, first, second, store = uuid(), uuid(), uuid(), uuid()
    app.backend.store_result(detect, {"status": "Success"}, "SUCCESS")
    app.backend.store_result(first, {"status": "Success"}, "SUCCESS")
    assert unfinished(app, [[detect], [first, second], [store]]) == [second]


def test_lost_only_when_no_unfinished_task_has_a_message(own_db: str) -> None:
    client = redis.Redis.from_url(own_db)
    app = Celery(broker=own_db, backend=own_db)
    detect, estimate = uuid(), uuid()
    app.backend.store_result(detect, {"status": "Success"}, "SUCCESS")
    run = [[detect], [estimate]]
    client.lpush(QUEUES[1], message(estimate))
    assert not lost(client, QUEUES, app, run)
    client.delete(QUEUES[1])
    assert lost(client, QUEUES, app, run)
    app.backend.store_result(estimate, {"status": "Success"}, "SUCCESS")
    assert not lost(client, QUEUES, app, run)
