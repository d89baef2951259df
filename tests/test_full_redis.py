"""A Redis near or at its ``maxmemory`` (Redis's default noeviction policy then refuses
writes): the facade first drops the oldest kept results, then answers RESOURCE_EXHAUSTED
and stores nothing. The facade's servicers run in this process against a Redis of their
own; no worker is needed, since nothing is sent."""

from __future__ import annotations

import contextlib
import dataclasses
import types
from collections.abc import Iterator

import grpc
import kombu.exceptions
import pytest
import redis
from celery import Celery

from grpc_facade.metrics import Metrics, queue_client
from grpc_facade.pipeline import Pipeline, RedisFull
from grpc_facade.server import build_server
from grpc_facade.servicers import _redis_full
from grpc_facade.stack import wait_until
from tasks.shared import redis_store, settings
from tests.conftest import SERVICES, call_service, free_port, private_redis, variant


@pytest.fixture(scope="module")
def full_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis whose ``maxmemory`` (1 byte) is always exceeded."""
    with private_redis(tmp_path_factory.mktemp("full-redis"), "--maxmemory", "1") as url:
        yield url


def config(url: str, memory_limit: float) -> settings.Settings:
    return dataclasses.replace(settings.load(), redis_url=url, grpc_host="127.0.0.1", grpc_port=0, redis_memory_limit=memory_limit)


@contextlib.contextmanager
def facade(url: str, memory_limit: float) -> Iterator[types.SimpleNamespace]:
    server, _health, port = build_server(config(url, memory_limit), Metrics(queue_client(url)))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield types.SimpleNamespace(channel=channel)
    finally:
        server.stop(None)


@pytest.mark.parametrize("service", SERVICES)
def test_the_facade_refuses_new_images_near_redis_maxmemory(full_redis: str, service: str, astronaut_bytes: bytes) -> None:
    with facade(full_redis, memory_limit=0.9) as stack, pytest.raises(grpc.RpcError) as raised:
        call_service(stack, service, variant(astronaut_bytes, 50), timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Redis is full" in raised.value.details() and "REDIS_MEMORY_LIMIT=0.9" in raised.value.details()
    assert redis.Redis.from_url(full_redis).dbsize() == 0


def test_a_write_redis_refuses_is_resource_exhausted_too(full_redis: str, astronaut_bytes: bytes) -> None:
    # A limit the facade never reaches: Redis itself refuses the first write.
    with facade(full_redis, memory_limit=1e9) as stack, pytest.raises(grpc.RpcError) as raised:
        call_service(stack, "StoreData", variant(astronaut_bytes, 51), timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Redis is full" in raised.value.details() and "maxmemory" in raised.value.details()
    assert redis.Redis.from_url(full_redis).dbsize() == 0


def test_room_is_read_again_within_a_second(full_redis: str) -> None:
    client = redis.Redis.from_url(full_redis)
    pipeline = Pipeline(config(full_redis, memory_limit=0.9))
    with pytest.raises(RedisFull):
        pipeline.check_room(0)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used * 2)  # half full now
    try:
        wait_until(lambda: not _refused(pipeline, 0), 3, "the facade to see the room")
        # Images let in before the next reading count against it: the limit is 1.8 x used.
        assert not _refused(pipeline, used // 2)
        assert _refused(pipeline, used // 2)
        client.config_set("maxmemory", used)  # full
        wait_until(lambda: _refused(pipeline, 0), 3, "the facade to see Redis full again")
    finally:
        client.config_set("maxmemory", 1)


def _refused(pipeline: Pipeline, incoming: int) -> bool:
    try:
        pipeline.check_room(incoming)
    except RedisFull:
        return True
    return False


def test_a_message_redis_refuses_is_told_from_a_redis_that_is_down(full_redis: str) -> None:
    # Publishing goes through kombu, which wraps Redis's errors in its own.
    with pytest.raises(kombu.exceptions.OperationalError) as refused:
        Celery(broker=full_redis).send_task("tasks.nothing", queue="full-redis-test", retry=False)
    assert _redis_full(refused.value)
    with pytest.raises(kombu.exceptions.OperationalError) as down:
        Celery(broker=f"redis://127.0.0.1:{free_port()}/0").send_task("tasks.nothing", queue="full-redis-test", retry=False)
    assert not _redis_full(down.value)


@contextlib.contextmanager
def filled(url: str, kept: int, other: int, fullness: float) -> Iterator[tuple[redis.Redis, list[str]]]:
    """The Redis at ``url`` holding ``kept`` results of about 10 KiB, kept one after the
    other (the oldest first in the list), and ``other`` bytes of something else, its
    ``maxmemory`` set so that it is ``fullness`` full."""
    client = redis.Redis.from_url(url)
    client.config_set("maxmemory", 0)
    client.flushdb()
    store = redis_store.ImageStore(client, image_ttl=60, result_ttl=600)
    keys = [f"{n:064x}" for n in range(kept)]
    for key in keys:
        store.put_outcome(key, {"document": {"faces": ["x" * 10_000]}, "storage": {}})
    if other:
        client.set("other", b"o" * other)
    client.config_set("maxmemory", int(redis_store.memory(client)[0] / fullness))
    try:
        yield client, keys
    finally:
        client.config_set("maxmemory", 0)
        client.flushdb()
        client.config_set("maxmemory", 1)


def test_the_oldest_kept_results_make_room_for_new_images(full_redis: str) -> None:
    dropped: list[int] = []
    pipeline = Pipeline(config(full_redis, memory_limit=0.9), on_results_dropped=dropped.append)
    with filled(full_redis, kept=400, other=2 * 2**20, fullness=0.95) as (client, keys):
        pipeline.check_room(100_000)  # no RedisFull
        assert len(dropped) == 1 and 0 < dropped[0] < len(keys)
        gone = [key for key in keys if not client.exists(f"{key}:result")]
        assert gone == keys[: dropped[0]]  # the oldest, and only those
        assert client.zcard(redis_store.KEPT_RESULTS) == len(keys) - dropped[0]
        assert client.strlen("other") == 2 * 2**20  # nothing else is touched
        used, limit = redis_store.memory(client)
        assert used + 100_000 < (0.9 - 0.05) * limit  # room made down to the margin below the limit
        pipeline.check_room(100_000)
        assert len(dropped) == 1  # the margin holds the next images without dropping more


def test_a_redis_full_of_other_data_still_refuses_new_images(full_redis: str) -> None:
    dropped: list[int] = []
    pipeline = Pipeline(config(full_redis, memory_limit=0.9), on_results_dropped=dropped.append)
    with filled(full_redis, kept=20, other=8 * 2**20, fullness=0.97) as (client, keys):
        with pytest.raises(RedisFull):
            pipeline.check_room(100_000)
        assert dropped == [len(keys)]  # every kept result went, and still no room
        assert client.zcard(redis_store.KEPT_RESULTS) == 0 and client.strlen("other") == 8 * 2**20
