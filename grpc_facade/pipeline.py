"""What a request does, without gRPC: check the image, store it once, run the task graph.

The servicers in ``servicers.py`` call these methods and map their exceptions to gRPC
status codes; tests and the benchmark can call them directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import celery.exceptions
import redis
from celery import uuid
from celery.result import AsyncResult

from grpc_facade import lost_messages
from grpc_facade.runs import LocalRun, Run, SharedRun
from tasks import app
from tasks.shared import graph, logs, redis_store, settings
from tasks.shared.document import SUCCESS
from tasks.shared.imaging import check_image, image_key
from tasks.shared.output_files import check_key, read_outcome

log = logging.getLogger(__name__)

MEMORY_CHECK_EVERY = 1.0  # seconds a reading of Redis's memory is trusted
# Dropping old results frees this much below the limit, so it is not redone at once: a
# share of maxmemory, at most what one request can wait for (docs/benchmarks.md).
ROOM_MARGIN = 0.05
ROOM_MARGIN_BYTES = 256 * 2**20
DROP_BATCH = 200  # kept results dropped between two readings of Redis's memory
JOIN_GRACE = 5  # seconds a run's Celery results outlive its answer, for a request joining the run as it ends


class RedisFull(RuntimeError):
    """Redis is too close to its ``maxmemory`` to take another image now."""


class Pipeline:
    """Runs requests against the Celery workers and Redis named by ``config``."""

    def __init__(
        self,
        config: settings.Settings,
        on_sent_again: Callable[[], object] = lambda: None,
        on_results_dropped: Callable[[int], object] = lambda count: None,
    ) -> None:
        """``on_sent_again`` is called each time a run is sent again (see :meth:`_wait`),
        ``on_results_dropped`` with the number of kept results dropped to make room (see
        :meth:`check_room`)."""
        self.config = config
        self.on_sent_again = on_sent_again
        self.on_results_dropped = on_results_dropped
        self.store = redis_store.ImageStore(redis_store.client(config.redis_url), config.image_ttl, config.result_ttl)
        self._memory: tuple[int, int] = (0, 0)  # Redis's used memory and maxmemory when last read
        self._memory_read = -MEMORY_CHECK_EVERY
        self._admitted = 0  # bytes of the images let in since, which that reading may not count
        self._room = threading.Lock()  # one thread reads Redis's memory and makes room at a time

    def check(self, data: bytes) -> str:
        """The key of ``data`` once it decodes as an image; :class:`ImageError` otherwise."""
        check_image(data, self.config.max_image_pixels)
        return image_key(data)

    def accept(self, data: bytes) -> str:
        """Check ``data``, then store it under its key (nothing is stored for bad input)."""
        key = self.check(data)
        logs.request_key.set(key)
        self.check_room(len(data))
        self.store.put_image(key, data)
        return key

    def process(
        self, data: bytes, timeout: float, recompute: bool = False, annotate: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Detection, then the per-face stages, then storage (``tasks/shared/graph.py``).
        Returns ``(outcome, cached)``.

        ``outcome`` is ``{"document": ..., "storage": ...}``. An image already processed
        successfully is answered from its stored outcome (:meth:`stored_outcome`: Redis,
        else ``OUTPUT_DIR``; ``cached`` is true) unless ``recompute`` (or ``annotate`` when
        that outcome has no annotated copy); concurrent requests for the same image share one run.
        """
        key = image_key(data)
        logs.request_key.set(key)
        if not recompute:
            stored = self.stored_outcome(key)
            done = stored is not None and stored["document"]["status"] == SUCCESS
            if done and (stored["storage"].get("annotated_path") or not annotate):
                log.info("[%s] answered from the stored result", key[:12])
                return stored, True
        check_image(data, self.config.max_image_pixels)  # the key is known: hash the bytes once
        self.check_room(len(data))
        run_id = uuid()
        running = self.store.claim_run(key, run_id, timeout + 5)
        if running is not None:
            log.info("[%s] joining the run already under way (%s)", key[:12], running)
            return self._wait(SharedRun(self.store, key, running, annotate, data), key, timeout), False
        try:
            self.store.put_image(key, data)
            run = SharedRun(self.store, key, run_id, annotate)
            run.send()
            return self._wait(run, key, timeout), False
        finally:
            self.store.release_run(key, run_id)

    def check_room(self, incoming: int) -> None:
        """Raise :class:`RedisFull` unless Redis has room for ``incoming`` more bytes below
        ``REDIS_MEMORY_LIMIT`` of its ``maxmemory``. A Redis at its limit refuses writes:
        the results and acknowledgements of the runs under way would fail. Redis is asked
        at most once a second; the images let in meanwhile count against that reading.

        Past the limit, the oldest kept results are dropped first (``output/`` keeps them),
        down to a margin below it: a cache must not stop new work.
        """
        with self._room:
            if time.monotonic() - self._memory_read >= MEMORY_CHECK_EVERY:
                self._memory, self._memory_read, self._admitted = self.store.memory_in_use(), time.monotonic(), 0
            used, limit = self._memory
            share = self.config.redis_memory_limit
            pending = self._admitted + incoming
            if limit and used + pending >= share * limit:
                margin = min(ROOM_MARGIN * limit, ROOM_MARGIN_BYTES)
                used = self._drop_kept_results(used, pending, share * limit - margin)
                self._memory = (used, limit)
                if used + pending >= share * limit:
                    raise RedisFull(
                        f"Redis is full: {used + self._admitted} of its maxmemory {limit} bytes in use, and the facade "
                        f"takes new images below REDIS_MEMORY_LIMIT={share:g} of it; try again later"
                    )
            self._admitted = pending

    def _drop_kept_results(self, used: int, pending: int, target: float) -> int:
        """Drop the oldest kept results until ``pending`` more bytes fit below ``target``
        or none is left; returns Redis's used memory then (``used`` if none was dropped)."""
        dropped = 0
        while used + pending >= target:
            count = self.store.drop_oldest_outcomes(DROP_BATCH)
            if not count:
                break
            dropped += count
            used, _ = self.store.memory_in_use()
        if dropped:
            log.warning("Redis near its maxmemory: dropped the %d oldest kept results (output/ keeps them)", dropped)
            self.on_results_dropped(dropped)
        return used

    def stored_outcome(self, key: str, storage_timeout: float = 0) -> dict[str, Any] | None:
        """The outcome kept for ``key`` in Redis, else rebuilt from ``OUTPUT_DIR``, else None.

        With ``storage_timeout``, a storage worker is asked next to read it from its own
        ``OUTPUT_DIR``, so that a facade without the shared folder answers too; waiting
        longer raises ``celery.exceptions.TimeoutError``.
        """
        outcome = self.store.get_outcome(check_key(key)) or read_outcome(self.config.output_dir, key)
        if outcome is not None or storage_timeout <= 0:
            return outcome
        reading = graph.read_result(app, key).apply_async()
        try:
            return reading.get(timeout=storage_timeout)
        finally:
            reading.forget()  # the outcome it carries is not kept twice

    def single_stage(self, stage: str, data: bytes, timeout: float) -> tuple[str, dict[str, Any]]:
        """One stage on its own; returns the key and the stage result it stored in Redis."""
        key = self.accept(data)
        run = LocalRun(lambda: graph.stage(app, stage, key))
        run.send()
        self._wait(run, key, timeout)
        result = self.store.get_stage_result(key, stage)
        if result is None:
            raise RuntimeError(f"the {stage} task finished but {redis_store.stage_key(key, stage)} is not in Redis")
        return key, result

    def store_only(self, data: bytes, timeout: float) -> tuple[str, dict[str, Any]]:
        """The storage stage on its own, merging whatever stage results Redis holds."""
        key = self.accept(data)
        run = LocalRun(lambda: graph.storage(app, key).clone(args=([],)))
        run.send()
        return key, self._wait(run, key, timeout)

    def _wait(self, run: Run, key: str, timeout: float) -> Any:
        """Wait for ``run``'s result, at most ``timeout`` seconds; send it again if a
        message of it was lost with a worker machine (unless another facade did).

        Raises ``celery.exceptions.TimeoutError`` when it takes longer; the work itself
        goes on and still writes its results.
        """
        deadline = time.monotonic() + timeout
        result = app.AsyncResult(run.id)
        every = self.config.lost_message_check
        while True:
            remaining = deadline - time.monotonic()
            if every <= 0 or remaining <= every:
                return self._answer(result, run, max(remaining, 0.001))  # Celery waits forever on 0
            try:
                return self._answer(result, run, every)
            except celery.exceptions.TimeoutError:
                why = self._lost(run)
                if why and run.send_again():
                    log.warning("[%s] %s; sent the run again", key[:12], why)
                    self.on_sent_again()

    def _answer(self, result: AsyncResult, run: Run, timeout: float) -> Any:
        """:func:`_outcome`; then Celery's results of the run expire within
        ``AFTER_RUN_TTL`` (at least ``JOIN_GRACE``): Celery keeps them ``IMAGE_TTL`` for
        runs waiting in a backlog, and once answered they serve only requests joining it."""
        outcome = _outcome(result, timeout)
        try:
            tasks = [task for step in run.latest() or [[run.id]] for task in step]
            self.store.shorten_expiry(
                [app.backend.get_key_for_task(task).decode() for task in tasks], max(self.config.after_run_ttl, JOIN_GRACE)
            )
        except redis.RedisError as error:  # housekeeping: the answer is here, they still expire later
            log.warning("Celery's results of run %s keep IMAGE_TTL: %s", run.id, error)
        return outcome

    def _lost(self, run: Run) -> str:
        """Why ``run`` must be sent again ("" if it need not): lost, and still lost a second
        later (a live worker records a message it takes within milliseconds, and a chord
        sends its callback just after its last result)."""
        if not self._lost_now(run):
            return ""
        time.sleep(1.0)
        return self._lost_now(run)

    def _lost_now(self, run: Run) -> str:
        steps = run.latest()  # a run another facade sent again meanwhile has new tasks
        if steps is None:
            return "the facade that claimed this run died before sending it" if run.unsent() else ""
        lost = lost_messages.lost(self.store.redis, graph.QUEUES, app, steps)
        return "a message of this run was lost with a worker" if lost else ""


def _outcome(result: AsyncResult, timeout: float) -> Any:
    """Wait for ``result`` through the result backend's pub/sub, at most ``timeout`` s.

    ``follow_parents=False``: by default Celery re-reads every earlier task's state from
    Redis each time the wait wakes up; the stages turn their errors into results (Redis
    errors they retry), so those reads would buy nothing.
    """
    return result.get(timeout=timeout, follow_parents=False)
