"""The facade's Prometheus metrics, served over HTTP on ``METRICS_PORT``.

A gRPC interceptor counts every unary call of every service with its final status code,
its latency and the calls in flight; ``ImageInput.ProcessImage`` adds each stage's
runtime for answers it computed; the depth of each Celery queue is read from Redis at
scrape time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
import prometheus_client
import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry

from proto import image_processing_pb2 as pb
from tasks import QUEUES
from tasks.shared import redis_store

log = logging.getLogger(__name__)

# A cached answer takes milliseconds, a computed one a fraction of a second, a backlog up to REQUEST_TIMEOUT.
LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# Storage takes milliseconds, detection tenths of a second, anything slower is a problem to see.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


def method_label(full_method: str) -> str:
    """``/image_processing.ImageInput/ProcessImage`` -> ``ImageInput.ProcessImage``."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}.{method}"


def final_code(set_code: grpc.StatusCode | None, raised: bool) -> grpc.StatusCode:
    """The status a unary call ends with, as grpc decides it: the code the handler set
    (``context.abort`` sets one, then raises); an exception without one is UNKNOWN."""
    if set_code is not None:
        return set_code
    return grpc.StatusCode.UNKNOWN if raised else grpc.StatusCode.OK


def bind_address(grpc_host: str) -> str:
    """GRPC_HOST as an HTTP server takes it: ``[::]`` -> ``::``."""
    return grpc_host.removeprefix("[").removesuffix("]")


def queue_client(redis_url: str) -> redis.Redis:
    """A client for scrapes: no retries and short timeouts, so a scrape never waits long on a Redis that is down."""
    return redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))


T = TypeVar("T")


class _RedisScrape(Collector):
    """A collector that reads Redis at each scrape. When Redis does not answer the scrape
    still succeeds, without these samples; the outage is logged once, until Redis answers."""

    what = ""  # for the log line

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._redis_down = False

    def _read(self, read: Callable[[], T]) -> T | None:
        try:
            value = read()
        except redis.RedisError as error:
            if not self._redis_down:
                log.warning("metrics: cannot read %s from Redis: %s", self.what, error)
                self._redis_down = True
            return None
        self._redis_down = False
        return value


class QueueDepth(_RedisScrape):
    """``facade_queue_depth{queue}``: LLEN of each Celery queue's Redis list."""

    what = "the queue depths"

    def __init__(self, connection: redis.Redis, queues: Iterable[str] = QUEUES) -> None:
        super().__init__(connection)
        self.queues = tuple(queues)

    def _depths(self) -> list[int]:
        with self.connection.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.llen(queue)  # Celery's Redis transport keeps a queue as a list under its name
            return pipe.execute()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "facade_queue_depth", "Tasks waiting in each Celery queue (not yet taken by a worker)", labels=["queue"]
        )
        depths = self._read(self._depths)
        if depths is not None:
            for queue, depth in zip(self.queues, depths, strict=True):
                family.add_metric([queue], depth)
        yield family


class RedisMemory(_RedisScrape):
    """``facade_redis_used_memory_bytes`` and ``facade_redis_maxmemory_bytes``: how near Redis
    is to the share of its ``maxmemory`` from which the facade refuses new images."""

    what = "its memory"

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("facade_redis_used_memory_bytes", "Memory Redis uses (INFO memory's used_memory)")
        limit = GaugeMetricFamily("facade_redis_maxmemory_bytes", "Redis's maxmemory (0: none)")
        reading = self._read(lambda: redis_store.memory(self.connection))
        if reading is not None:
            used.add_metric([], reading[0])
            limit.add_metric([], reading[1])
        yield used
        yield limit


class Metrics:
    """The facade's metrics in a registry of their own, plus the interceptor that fills them."""

    def __init__(self, connection: redis.Redis, methods: Iterable[str] = ()) -> None:
        """``methods``: labels (see :func:`method_label`) to show at zero before their first call."""
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "facade_requests", "gRPC calls answered, by method and status code",
            ["method", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "facade_request_duration_seconds", "Time from a call's arrival to its answer, by method",
            ["method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "facade_requests_in_flight", "gRPC calls being handled now, by method",
            ["method"], registry=self.registry,
        )
        self.stage_runtime = Histogram(
            "facade_stage_runtime_seconds", "Runtime of each stage that succeeded, for ProcessImage answers computed",
            ["stage"], buckets=STAGE_BUCKETS, registry=self.registry,
        )
        self.runs_sent_again = Counter(
            "facade_runs_sent_again", "Runs sent again because a message of theirs was lost with a worker machine, or sent for a facade that died after claiming them",
            registry=self.registry,
        )
        self.kept_results_dropped = Counter(
            "facade_kept_results_dropped", "Kept results dropped from Redis, oldest first, to make room for new images",
            registry=self.registry,
        )
        self.registry.register(QueueDepth(connection))
        self.registry.register(RedisMemory(connection))
        for method in methods:
            self.requests.labels(method, grpc.StatusCode.OK.name)
            self.latency.labels(method)
            self.in_flight.labels(method)
        for stage in ("landmark", "agegender", "storage"):
            self.stage_runtime.labels(stage)
        self.interceptor = _Interceptor(self)

    def observe_stages(self, response: pb.CombinedResponse) -> None:
        """Record the runtime of each stage of ``response`` that succeeded."""
        stages = {
            "landmark": response.landmark_response,
            "agegender": response.age_gender_response,
            "storage": response.storage_response,
        }
        for stage, result in stages.items():
            if result.status == "Success":
                self.stage_runtime.labels(stage).observe(result.runtime)

    def observe_call(self, method: str, handler: Callable[[Any, grpc.ServicerContext], Any],
                     request: Any, context: grpc.ServicerContext) -> Any:
        """Run one unary ``handler`` call, counting it in flight, then by its final code."""
        started = time.perf_counter()
        in_flight = self.in_flight.labels(method)
        in_flight.inc()
        raised = True
        try:
            response = handler(request, context)
            raised = False
            return response
        finally:
            in_flight.dec()
            self.latency.labels(method).observe(time.perf_counter() - started)
            self.requests.labels(method, final_code(context.code(), raised).name).inc()

    def serve(self, grpc_host: str, port: int) -> WSGIServer:
        """Serve ``/metrics`` on ``port`` of GRPC_HOST's interface, in a daemon thread."""
        address = bind_address(grpc_host)
        try:
            server, _ = prometheus_client.start_http_server(port, addr=address, registry=self.registry)
        except OSError as error:
            raise OSError(f"cannot serve metrics on {grpc_host}:{port}: {error}") from error
        return server


class _Interceptor(grpc.ServerInterceptor):
    """Wraps each unary-unary handler in :meth:`Metrics.observe_call`; streams pass untouched."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        method, behaviour, metrics = method_label(handler_call_details.method), handler.unary_unary, self.metrics
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: metrics.observe_call(method, behaviour, request, context),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
