"""CPU claims against the session's real Redis: who runs a model on this machine now."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tasks.cpu_claims import CpuClaims, cpu_key
from tests.conftest import RunningStack


@pytest.fixture
def claims(stack: RunningStack) -> Iterator[CpuClaims]:
    host = f"test-host-{time.monotonic_ns()}"  # not the stack's own machine key
    yield CpuClaims(stack.redis, host)
    stack.redis.delete(cpu_key(host))


def test_a_lone_claim_is_alone_and_is_given_back(claims: CpuClaims) -> None:
    with claims.claim() as alone:
        assert alone
        assert claims.holders() == 1
    assert claims.holders() == 0


def test_a_second_claim_is_not_alone_nor_is_the_third(claims: CpuClaims) -> None:
    with claims.claim() as first, claims.claim() as second, claims.claim() as third:
        assert (first, second, third) == (True, False, False)
        assert claims.holders() == 3
    with claims.claim() as again:
        assert again


def test_machines_do_not_see_each_others_claims(stack: RunningStack, claims: CpuClaims) -> None:
    other = CpuClaims(stack.redis, claims.key + "-elsewhere")
    try:
        with claims.claim(), other.claim() as alone_there:
            assert alone_there
    finally:
        stack.redis.delete(other.key)


def test_a_claim_is_given_back_when_the_block_raises(claims: CpuClaims) -> None:
    with pytest.raises(RuntimeError), claims.claim():
        raise RuntimeError("the model failed")
    assert claims.holders() == 0


def test_the_claim_of_a_killed_process_ends_with_its_lease(stack: RunningStack) -> None:
    short = CpuClaims(stack.redis, f"test-host-lease-{time.monotonic_ns()}", lease=0.3)
    try:
        orphan = short.claim()
        assert orphan.__enter__()  # never exited: as if the process died while detecting
        with short.claim() as alone:
            assert not alone
        time.sleep(0.4)
        with short.claim() as alone:
            assert alone  # the orphan's lease has ended and was swept away
        assert stack.redis.zcard(short.key) == 0
    finally:
        stack.redis.delete(short.key)


def test_simultaneous_claims_see_each_other(claims: CpuClaims) -> None:
    barrier = threading.Barrier(4)
    alone: list[bool] = []

    def hold() -> None:
        with claims.claim() as mine:
            alone.append(mine)
            barrier.wait(timeout=10)  # every claim is held before any is given back

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(alone) == [False, False, False, True]


def test_taking_a_claim_without_redis_raises_for_the_task_to_retry() -> None:
    unreachable = CpuClaims(redis.Redis(port=1, socket_connect_timeout=0.5), "nowhere")
    with pytest.raises(redis.ConnectionError), unreachable.claim():
        pytest.fail("no claim without Redis")
