"""The standard gRPC health service, SERVING only while the whole pipeline can answer.

A background thread checks every few seconds that Redis answers and that each queue
(``landmark``, ``agegender``, ``storage``) has at least one live worker consuming it.
"""

from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2

from tasks import QUEUES, app
from tasks.shared.redis_store import ImageStore

log = logging.getLogger(__name__)



def consumed_queues(timeout: float = 1.0) -> set[str]:
    """Names of the queues that at least one live worker consumes now."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {queue["name"] for queues in replies.values() for queue in queues}


def pipeline_problem(images: ImageStore) -> str:
    """Why the pipeline cannot serve now, or ``""`` when it can."""
    try:
        images.redis.ping()
    except Exception as error:
        return f"Redis does not answer: {error}"
    try:
        missing = set(QUEUES) - consumed_queues()
    except Exception as error:
        return f"cannot ask the workers: {error}"
    return f"no worker consumes queue(s): {', '.join(sorted(missing))}" if missing else ""


class PipelineHealth:
    """Keeps a ``grpc_health`` servicer's status in step with :func:`pipeline_problem`."""

    def __init__(self, images: ImageStore, services: list[str], interval: float = 2.0) -> None:
        self.servicer = health.HealthServicer()
        self.images = images
        self.services = ["", *services]
        self.interval = interval
        self._stop = threading.Event()
        self._last = None
        self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    def _set(self, status: int) -> None:
        for service in self.services:
            self.servicer.set(service, status)

    def check_once(self) -> str:
        problem = pipeline_problem(self.images)
        status = health_pb2.HealthCheckResponse.NOT_SERVING if problem else health_pb2.HealthCheckResponse.SERVING
        if status != self._last:
            if problem:
                log.warning("health: NOT_SERVING (%s)", problem)
            else:
                log.info("health: SERVING")
            self._last = status
        self._set(status)
        return problem

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        threading.Thread(target=self._run, name="health", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.servicer.enter_graceful_shutdown()
