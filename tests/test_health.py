"""gRPC health follows the pipeline: Redis and a live consumer on every queue.

This module runs its own small stack so it can kill and restart parts of it; that stack
also logs JSON (``LOG_FORMAT=json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from grpc_facade.stack import Stack
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tests.conftest import kill, private_stack

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with private_stack(tmp_path_factory.mktemp("health"), LOG_FORMAT="json") as stack:
        yield stack


def health(stack: Stack, service: str = "") -> int:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def wait_for_health(stack: Stack, wanted: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while health(stack) != wanted:
        assert time.monotonic() < deadline, f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)}"
        time.sleep(0.3)


def test_serving_with_every_service_named(own_stack: Stack) -> None:
    assert health(own_stack) == SERVING
    for service in ("image_processing.ImageInput", "image_processing.FaceLandmarkDetection",
                    "image_processing.AgeGenderEstimation", "image_processing.DataStorage"):
        assert health(own_stack, service) == SERVING


def test_not_serving_without_a_landmark_worker_then_serving_again(own_stack: Stack) -> None:
    kill(own_stack, "worker-landmark")
    wait_for_health(own_stack, NOT_SERVING)
    own_stack.restart("worker-landmark")
    wait_for_health(own_stack, SERVING)


def test_not_serving_without_redis_then_serving_again(own_stack: Stack) -> None:
    kill(own_stack, "redis")
    wait_for_health(own_stack, NOT_SERVING)
    own_stack.restart("redis")
    wait_for_health(own_stack, SERVING, timeout=90)


def test_reflection_lists_the_services(own_stack: Stack) -> None:
    with grpc.insecure_channel(own_stack.grpc_target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {
        "image_processing.ImageInput",
        "image_processing.FaceLandmarkDetection",
        "image_processing.AgeGenderEstimation",
        "image_processing.DataStorage",
        "grpc.health.v1.Health",
    } <= services


def json_lines_with_key(path: Path, key: str) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("key") == key]


def test_json_logs_of_every_process_carry_the_key(own_stack: Stack, astronaut_bytes: bytes) -> None:
    with grpc.insecure_channel(own_stack.grpc_target) as channel:
        response = pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=astronaut_bytes), timeout=60)
    assert response.status == "Success"
    for name in ("facade", "worker-landmark", "worker-agegender", "worker-storage"):
        path = own_stack.log_dir / f"{name}.log"
        mine = json_lines_with_key(path, response.redis_key)
        # Celery logs a task's success after storing its result, which may already have
        # answered the client: the storage worker's last line can come a moment later.
        deadline = time.monotonic() + 5
        while name.startswith("worker") and not any(" succeeded in " in line["message"] for line in mine):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            mine = json_lines_with_key(path, response.redis_key)
        assert mine, f"no JSON line of {name} carries the key"
        assert all({"time", "level", "message"} <= set(line) for line in mine)
        if name.startswith("worker"):  # Celery's own lines of the request carry it too
            assert any(line["message"].endswith(" received") for line in mine), name
            assert any(" succeeded in " in line["message"] for line in mine), name
