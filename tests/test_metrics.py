"""The facade's Prometheus metrics: the interceptor's status codes on an in-process server,
the queue-depth collector against Redis up and down, and the real stack's /metrics
scraped while requests run."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import prometheus_client
import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from grpc_facade.metrics import Metrics, QueueDepth, RedisMemory, bind_address, final_code, method_label, queue_client
from proto import image_processing_pb2 as pb
from tasks import QUEUES
from tests.conftest import FLOWER_PASSWORD, FLOWER_USER, RunningStack, free_port, variant

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is absent (a series not created yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def down_redis() -> redis.Redis:
    """The scrape's client, for a port nothing listens on."""
    return queue_client(f"redis://127.0.0.1:{free_port()}/0")


# ---------------------------------------------------------------------------- pure functions


def test_method_label_is_service_and_method() -> None:
    assert method_label("/image_processing.ImageInput/ProcessImage") == "ImageInput.ProcessImage"
    assert method_label("/grpc.health.v1.Health/Check") == "Health.Check"
    assert method_label("/Bare/Call") == "Bare.Call"


def test_final_code_is_what_grpc_sends() -> None:
    assert final_code(None, raised=False) == grpc.StatusCode.OK
    assert final_code(None, raised=True) == grpc.StatusCode.UNKNOWN
    assert final_code(grpc.StatusCode.NOT_FOUND, raised=True) == grpc.StatusCode.NOT_FOUND
    assert final_code(grpc.StatusCode.INVALID_ARGUMENT, raised=False) == grpc.StatusCode.INVALID_ARGUMENT


def test_bind_address_drops_the_brackets_grpc_wants() -> None:
    assert bind_address("[::]") == "::"
    assert bind_address("[::1]") == "::1"
    assert bind_address("0.0.0.0") == "0.0.0.0"
    assert bind_address("localhost") == "localhost"


def test_stage_runtimes_of_successful_stages_only() -> None:
    metrics = Metrics(down_redis())
    metrics.observe_stages(pb.CombinedResponse(
        landmark_response=pb.LandmarkResponse(status="Success", runtime=0.2),
        age_gender_response=pb.AgeGenderResponse(status="Failure", runtime=0.01),
        storage_response=pb.StorageResponse(status="Success", runtime=0.004),
    ))
    count = {stage: metrics.registry.get_sample_value("facade_stage_runtime_seconds_count", {"stage": stage})
             for stage in ("landmark", "agegender", "storage")}
    assert count == {"landmark": 1, "agegender": 0, "storage": 1}
    assert metrics.registry.get_sample_value("facade_stage_runtime_seconds_sum", {"stage": "landmark"}) == 0.2
    assert metrics.registry.get_sample_value(
        "facade_stage_runtime_seconds_bucket", {"stage": "storage", "le": "0.005"}) == 1


# ---------------------------------------------------------------------------- the interceptor


@pytest.fixture
def probe() -> Iterator[tuple[Metrics, grpc.Channel, dict[str, float]]]:
    """An in-process server whose methods end with each kind of status, behind the interceptor."""
    metrics = Metrics(down_redis(), methods=["Probe.Ok"])
    seen: dict[str, float] = {}

    def ok(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen["in_flight"] = metrics.registry.get_sample_value("facade_requests_in_flight", {"method": "Probe.Ok"})
        time.sleep(0.06)
        return request

    def invalid(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad bytes")

    def missing(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such key")

    def crash(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise RuntimeError("a bug")

    def set_code(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        return b""

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield request

    handlers = {name: grpc.unary_unary_rpc_method_handler(function) for name, function in
                {"Ok": ok, "Invalid": invalid, "Missing": missing, "Crash": crash, "SetCode": set_code}.items()}
    handlers["Stream"] = grpc.unary_stream_rpc_method_handler(stream)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[metrics.interceptor])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Probe", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield metrics, channel, seen
    finally:
        channel.close()
        server.stop(None)


def call(channel: grpc.Channel, method: str) -> grpc.StatusCode:
    try:
        channel.unary_unary(f"/test.Probe/{method}")(b"x", timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_interceptor_counts_each_call_under_the_code_the_client_gets(probe) -> None:
    metrics, channel, seen = probe
    before = parse(prometheus_client.generate_latest(metrics.registry).decode())
    assert ("facade_requests_total", frozenset({("method", "Probe.Ok"), ("code", "OK")})) in before  # shown at zero
    sent = [(method, call(channel, method).name) for method in ("Ok", "Ok", "Invalid", "Missing", "Crash", "SetCode")]
    assert sent == [("Ok", "OK"), ("Ok", "OK"), ("Invalid", "INVALID_ARGUMENT"), ("Missing", "NOT_FOUND"),
                    ("Crash", "UNKNOWN"), ("SetCode", "FAILED_PRECONDITION")]
    list(channel.unary_stream("/test.Probe/Stream")(b"x", timeout=10))
    after = parse(prometheus_client.generate_latest(metrics.registry).decode())

    counted = {(dict(labels)["method"], dict(labels)["code"]): count for (name, labels), count in after.items()
               if name == "facade_requests_total" and count}
    assert counted == {("Probe.Ok", "OK"): 2, ("Probe.Invalid", "INVALID_ARGUMENT"): 1,
                       ("Probe.Missing", "NOT_FOUND"): 1, ("Probe.Crash", "UNKNOWN"): 1,
                       ("Probe.SetCode", "FAILED_PRECONDITION"): 1}
    assert seen["in_flight"] == 1
    assert value(after, "facade_requests_in_flight", method="Probe.Ok") == 0
    assert value(after, "facade_request_duration_seconds_count", method="Probe.Ok") == 2
    assert value(after, "facade_request_duration_seconds_sum", method="Probe.Ok") >= 0.12
    assert value(after, "facade_request_duration_seconds_bucket", method="Probe.Ok", le="0.05") == 0
    assert value(after, "facade_request_duration_seconds_count", method="Probe.Invalid") == 1


# ---------------------------------------------------------------------------- queue depth


def test_queue_depth_reads_each_queue(stack: RunningStack) -> None:
    """LLEN of each queue's list, in a database of the stack's Redis that no worker reads."""
    spare = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/15")
    spare.delete(*QUEUES)
    spare.rpush("landmark", "a", "b", "c")
    spare.rpush("storage", "d")
    try:
        registry = prometheus_client.CollectorRegistry()
        registry.register(QueueDepth(spare))
        depths = {queue: registry.get_sample_value("facade_queue_depth", {"queue": queue}) for queue in QUEUES}
    finally:
        spare.delete(*QUEUES)
    assert depths == {"landmark": 3, "agegender": 0, "storage": 1}



def test_redis_memory_is_read_at_each_scrape(stack: RunningStack) -> None:
    registry = prometheus_client.CollectorRegistry()
    registry.register(RedisMemory(queue_client(stack.redis_url)))
    used = registry.get_sample_value("facade_redis_used_memory_bytes")
    assert used is not None and used > 0
    assert registry.get_sample_value("facade_redis_maxmemory_bytes") == int(stack.redis.config_get("maxmemory")["maxmemory"])

def test_queue_depth_without_redis_leaves_the_scrape_working(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(down_redis())
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="grpc_facade.metrics"):
        first = parse(prometheus_client.generate_latest(metrics.registry).decode())
        second = parse(prometheus_client.generate_latest(metrics.registry).decode())
    assert time.perf_counter() - started < 1.0  # no retries with backoff inside a scrape
    for samples in (first, second):
        assert not [key for key in samples if key[0].startswith(("facade_queue_depth", "facade_redis_"))]
        assert value(samples, "process_resident_memory_bytes") > 0  # the rest of the scrape is there
    for what in ("queue depths", "its memory"):
        assert len([record for record in caplog.records if what in record.getMessage()]) == 1


# ---------------------------------------------------------------------------- the real stack


def scrape(stack: RunningStack) -> Samples:
    reply = requests.get(stack.metrics_url, timeout=10)
    reply.raise_for_status()
    return parse(reply.text)


def test_metrics_while_requests_run(stack: RunningStack, image_input, astronaut_bytes: bytes) -> None:
    images = [variant(astronaut_bytes, n) for n in (60, 61, 62)]
    method = "ImageInput.ProcessImage"
    before = scrape(stack)
    in_flight_seen: list[float] = []
    done = threading.Event()

    def scraper() -> None:
        while not done.is_set():
            in_flight_seen.append(value(scrape(stack), "facade_requests_in_flight", method=method))
            time.sleep(0.02)

    watcher = threading.Thread(target=scraper)
    watcher.start()
    try:
        with futures.ThreadPoolExecutor(len(images)) as pool:
            responses = list(pool.map(
                lambda data: image_input.ProcessImage(pb.ImageRequest(image_data=data, recompute=True), timeout=60),
                images))
    finally:
        done.set()
        watcher.join()
    computed = scrape(stack)
    cached = image_input.ProcessImage(pb.ImageRequest(image_data=images[0]), timeout=60)
    with pytest.raises(grpc.RpcError) as invalid:
        image_input.ProcessImage(pb.ImageRequest(image_data=b"not an image at all"), timeout=30)
    with pytest.raises(grpc.RpcError) as missing:
        image_input.GetResult(pb.ResultRequest(redis_key="0" * 64), timeout=30)
    after = scrape(stack)

    assert [r.status for r in responses] == ["Success"] * 3 and not any(r.cached for r in responses)
    assert cached.cached
    assert (invalid.value.code(), missing.value.code()) == (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("facade_requests_total", method=method, code="OK") == 4
    assert grew("facade_requests_total", method=method, code="INVALID_ARGUMENT") == 1
    assert grew("facade_requests_total", method="ImageInput.GetResult", code="NOT_FOUND") == 1
    assert grew("facade_request_duration_seconds_count", method=method) == 5
    assert grew("facade_request_duration_seconds_bucket", method=method, le="+Inf") == 5
    # The server's clock starts before the handler's own (the response's runtime) and stops after it.
    assert grew("facade_request_duration_seconds_sum", method=method) >= sum(r.runtime for r in responses)

    # Stage runtimes come from the three computed answers only, not from the cached one.
    for stage, field in (("landmark", "landmark_response"), ("agegender", "age_gender_response"),
                         ("storage", "storage_response")):
        count = "facade_stage_runtime_seconds_count"
        assert value(computed, count, stage=stage) - value(before, count, stage=stage) == 3
        assert value(after, count, stage=stage) == value(computed, count, stage=stage)
        assert grew("facade_stage_runtime_seconds_sum", stage=stage) == pytest.approx(
            sum(getattr(r, field).runtime for r in responses), rel=1e-6)

    assert {queue for queue in QUEUES if ("facade_queue_depth", frozenset({("queue", queue)})) in after} == set(QUEUES)
    assert all(value(after, "facade_queue_depth", queue=queue) >= 0 for queue in QUEUES)
    assert value(after, "facade_redis_used_memory_bytes") > 0 and value(after, "facade_redis_maxmemory_bytes") == 0
    assert in_flight_seen and max(in_flight_seen) > 0
    assert value(after, "facade_requests_in_flight", method=method) == 0


def test_flower_serves_its_own_metrics_without_a_login(stack: RunningStack) -> None:
    """What the README says of Flower's /metrics, while the rest of Flower asks for a password."""
    assert requests.get(f"{stack.flower_url}/api/tasks", timeout=10).status_code == 401
    reply = requests.get(f"{stack.flower_url}/metrics", timeout=10)
    assert reply.status_code == 200
    assert {"flower_events", "flower_task_runtime_seconds"} <= {
        family.name for family in text_string_to_metric_families(reply.text)}
    authorised = requests.get(f"{stack.flower_url}/metrics", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
    assert authorised.status_code == 200
