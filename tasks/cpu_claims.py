"""Which stage tasks run a model on a machine now, so that one running alone may use
every core of it.

Each stage task claims the CPU while its model runs, in a Redis sorted set per machine
(``cpu:<CPU_HOST>``): one member per claim, scored with the time its lease ends. A claim
that finds no other tells the task it is alone, and the task then runs the models
allowed ``IDLE_THREADS`` cores (``tasks/models.py``): detection on that many onnxruntime
threads, age/gender with its two views side by side. At concurrency 1 the other core
would otherwise sit idle, since age/gender waits for the faces. Under load every claim
sees others and the models keep to ``ORT_THREADS``, which costs the least CPU per image
(docs/benchmarks.md).

Leases end by themselves, so a process killed while holding a claim only stops others
from using more cores until then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator

import redis

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0


def cpu_key(host: str) -> str:
    return f"cpu:{host}"


class CpuClaims:
    """Claims of the CPU of one machine (``host``), kept in Redis."""

    def __init__(self, connection: redis.Redis, host: str, lease: float = LEASE_SECONDS) -> None:
        self.redis = connection
        self.key = cpu_key(host)
        self.lease = lease

    def holders(self) -> int:
        """Claims held now (leases not yet ended)."""
        return self.redis.zcount(self.key, time.time(), "+inf")

    @contextlib.contextmanager
    def claim(self) -> Iterator[bool]:
        """Hold a claim for the ``with`` block; yields whether no other claim was held.

        Raises Redis' connection errors when taking the claim (the task retries then);
        giving it back is best effort, since its lease ends anyway.
        """
        member = f"{os.getpid()}:{uuid.uuid4().hex}"
        now = time.time()
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: no other claim lands in between
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.zadd(self.key, {member: now + self.lease})
            pipe.zcard(self.key)
            pipe.expire(self.key, int(self.lease) + 1)
            alone = pipe.execute()[2] == 1
        try:
            yield alone
        finally:
            try:
                self.redis.zrem(self.key, member)
            except redis.RedisError as error:
                log.warning("could not give back a CPU claim (its lease ends in %.0fs): %s", self.lease, error)
