"""The Redis layout shared by the facade and the workers.

Keys (``<key>`` is the SHA-256 hex of the image bytes):

- ``<key>``: the image bytes, written once by the facade, expiring after ``IMAGE_TTL``.
- ``<key>:landmark``, ``<key>:agegender``: each stage's JSON result, expiring after
  ``RESULT_TTL``.
- ``<key>:result``: the merged outcome of a fully successful run (what ``GetResult`` and
  repeated requests answer from), expiring after ``RESULT_TTL``, or dropped oldest first
  when Redis needs the room or more than ``KEPT_RESULTS_MAX`` are kept
  (:meth:`ImageStore.drop_oldest_outcomes`; ``output/`` keeps them).
- ``kept-results``: a sorted set of the keys with a ``<key>:result``, scored by when it
  was written, so that the oldest can be found.
- ``<key>:running``: the id of the run (its storage task's id) now computing this image, so that concurrent
  requests for the same image wait for one run instead of starting another.
- ``<key>:tasks``: that run's task ids, as long as its claim: every facade waiting for the
  run checks it for lost messages (``grpc_facade/runs.py``).

Once a run has succeeded, its image and stage results expire sooner, after
``AFTER_RUN_TTL`` (:meth:`ImageStore.expire_run_inputs`): ``output/`` and ``<key>:result``
hold what they held, and Redis would otherwise keep every image of the last hour.

Also there: Celery's own keys (``celery-task-meta-*``, the queues).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import redis

# Compare and delete in one step, so that a claim taken over meanwhile is not dropped (nor
# the other KEYS, which belong to it).
_DELETE_IF_EQUAL = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', unpack(KEYS)) end return 0"

# Note a run's tasks (KEYS[2]) only while its claim (KEYS[1]) names it (ARGV[1]) and no
# note exists yet, expiring with the claim: of the facades that would send it, one does.
_NOTE_IF_CLAIMED = """
if redis.call('get', KEYS[1]) ~= ARGV[1] or redis.call('exists', KEYS[2]) == 1 then return 0 end
local ttl = redis.call('pttl', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('set', KEYS[2], ARGV[2], 'PX', ttl)
return 1
"""

# Compare and replace in one step, keeping the expiry: of two facades that replace the
# same value, only the first does.
_REPLACE_IF_EQUAL = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""

# Shorten the expiry of KEYS to ARGV[1] seconds, never lengthening it. With a run id in
# ARGV[2], KEYS[1] is that run's claim and is left alone; nothing is shortened when the claim
# belongs to another run, a newer run of the same image that still needs it.
_SHORTEN_EXPIRY = """
local ttl = tonumber(ARGV[1])
local first = 1
if ARGV[2] then
  local claim = redis.call('get', KEYS[1])
  if claim and claim ~= ARGV[2] then return 0 end
  first = 2
end
for i = first, #KEYS do
  if redis.call('ttl', KEYS[i]) > ttl then redis.call('expire', KEYS[i], ttl) end
end
return 1
"""

# Redis unreachable for now: worth retrying (tasks) or answering UNAVAILABLE (facade).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
# Redis at its ``maxmemory`` (noeviction, as a broker must be): it refuses writes until keys expire.
FULL = redis.exceptions.OutOfMemoryError


class ImageMissing(LookupError):
    """The image is not (or no longer) in Redis: never stored, or expired."""


KEPT_RESULTS = "kept-results"


def stage_key(key: str, stage: str) -> str:
    """Where a stage writes its result for an image."""
    return f"{key}:{stage}"


def memory(connection: redis.Redis) -> tuple[int, int]:
    """Redis's used memory and its ``maxmemory`` in bytes (0: no limit)."""
    info = connection.info("memory")
    return int(info["used_memory"]), int(info.get("maxmemory", 0))


@cache
def client(url: str) -> redis.Redis:
    """One connection pool per process and URL (thread-safe)."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)


class ImageStore:
    """Reads and writes images and stage results in Redis."""

    def __init__(self, connection: redis.Redis, image_ttl: int, result_ttl: int, kept_results_max: int = 0) -> None:
        """``kept_results_max``: how many outcomes :meth:`put_outcome` keeps at most (0: no
        limit but ``result_ttl``)."""
        self.redis = connection
        self._delete_if_equal = connection.register_script(_DELETE_IF_EQUAL)
        self._replace_if_equal = connection.register_script(_REPLACE_IF_EQUAL)
        self._note_if_claimed = connection.register_script(_NOTE_IF_CLAIMED)
        self._shorten_expiry = connection.register_script(_SHORTEN_EXPIRY)
        self.image_ttl = image_ttl
        self.result_ttl = result_ttl
        self.kept_results_max = kept_results_max

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

    def put_outcome(self, key: str, outcome: dict[str, Any]) -> None:
        """Keep ``outcome`` for ``RESULT_TTL`` and note when, forgetting notes of outcomes
        already expired; past ``kept_results_max`` outcomes, drop the oldest."""
        now = time.time()
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(stage_key(key, "result"), json.dumps(outcome), ex=self.result_ttl)
            pipe.zadd(KEPT_RESULTS, {key: now})
            pipe.zremrangebyscore(KEPT_RESULTS, "-inf", now - self.result_ttl)
            pipe.zcard(KEPT_RESULTS)
            kept = pipe.execute()[-1]
        # Trimmed in batches, once 1 % over, rather than by one answer on every request.
        if self.kept_results_max and kept > self.kept_results_max + self.kept_results_max // 100:
            self.drop_oldest_outcomes(kept - self.kept_results_max)

    def drop_oldest_outcomes(self, count: int) -> int:
        """Delete the ``count`` oldest kept outcomes (their ``output/`` files stay); returns
        how many were still noted. Neither command needs memory, so a full Redis runs them."""
        oldest = self.redis.zpopmin(KEPT_RESULTS, count)
        if oldest:
            self.redis.delete(*(stage_key(key.decode(), "result") for key, _ in oldest))
        return len(oldest)

    def get_outcome(self, key: str) -> dict[str, Any] | None:
        return self.get_stage_result(key, "result")

    def memory_in_use(self) -> tuple[int, int]:
        """:func:`memory` of this store's Redis; ``(0, 0)`` from a server that does not
        tell (some hosted ones refuse ``INFO``)."""
        try:
            return memory(self.redis)
        except redis.ResponseError:
            return 0, 0

    def claim_run(self, key: str, run_id: str, ttl: float) -> str | None:
        """Mark ``run_id`` as the run computing ``key``; returns the id of a run already
        under way instead (and claims nothing), or ``None`` when the claim succeeded."""
        if self.redis.set(stage_key(key, "running"), run_id, nx=True, px=max(1, int(ttl * 1000))):
            return None
        current = self.redis.get(stage_key(key, "running"))
        return current.decode() if current is not None else self.claim_run(key, run_id, ttl)

    def release_run(self, key: str, run_id: str) -> None:
        """Drop the claim, and the run's tasks noted with it, if it is still ``run_id``'s
        (a later run may hold it now)."""
        self._delete_if_equal(keys=[stage_key(key, "running"), stage_key(key, "tasks")], args=[run_id])

    def run_claim(self, key: str) -> str | None:
        """The id of the run that holds the claim on ``key``, if any."""
        claim = self.redis.get(stage_key(key, "running"))
        return None if claim is None else claim.decode()

    def note_run_tasks(self, key: str, run_id: str, note: str) -> bool:
        """Note the tasks of run ``run_id`` of ``key`` (``note``: JSON) for as long as its
        claim, if the claim names that run and nobody noted them yet; returns whether it did."""
        return bool(self._note_if_claimed(keys=[stage_key(key, "running"), stage_key(key, "tasks")], args=[run_id, note]))

    def run_tasks(self, key: str) -> str | None:
        """What :meth:`note_run_tasks` noted for ``key``, while it lasts."""
        note = self.redis.get(stage_key(key, "tasks"))
        return None if note is None else note.decode()

    def replace_run_tasks(self, key: str, seen: str, note: str) -> bool:
        """Note ``note`` instead of ``seen``, unless the note is no longer ``seen``; returns
        whether it was replaced (its expiry stays)."""
        return bool(self._replace_if_equal(keys=[stage_key(key, "tasks")], args=[seen, note]))

    def expire_run_inputs(self, key: str, run_id: str, stages: Sequence[str], ttl: int) -> bool:
        """After run ``run_id`` succeeded: let the image and the ``stages``' results expire
        within ``ttl`` seconds, unless another run of the same bytes holds the claim now.
        Returns whether they were shortened."""
        keys = [stage_key(key, "running"), key, *(stage_key(key, stage) for stage in stages)]
        return bool(self._shorten_expiry(keys=keys, args=[ttl, run_id]))

    def shorten_expiry(self, keys: Sequence[str], ttl: int) -> None:
        """Let ``keys`` expire within ``ttl`` seconds (those expiring sooner keep their expiry)."""
        if keys:
            self._shorten_expiry(keys=list(keys), args=[ttl])
