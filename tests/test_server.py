"""The facade's process (``python -m grpc_facade.server``) against a Redis of its own, with
no worker: how it stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from grpc_facade.server import STOP_GRACE
from grpc_facade.stack import wait_until
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import free_port, private_redis, variant


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path) as url:
        yield url


def test_a_stopped_facade_exits_within_its_grace_though_a_request_still_waits(
    redis_url: str, tmp_path: Path, t1_bytes: bytes
) -> None:
    port = free_port()
    env = {"REDIS_URL": redis_url, "GRPC_PORT": str(port), "METRICS_PORT": "0", "OUTPUT_DIR": str(tmp_path / "output"),
           "PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"}
    with open(tmp_path / "facade.log", "wb") as output:
        facade = subprocess.Popen([sys.executable, "-m", "grpc_facade.server"], env=env, cwd=PROJECT_ROOT,
                                  stdout=output, stderr=subprocess.STDOUT)
    try:
        channel = grpc.insecure_channel(f"localhost:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        outcome: dict = {}

        def call() -> None:  # no worker will ever answer it
            try:
                pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=variant(t1_bytes, 60)), timeout=120)
            except grpc.RpcError as error:
                outcome["code"] = error.code()

        waiting = threading.Thread(target=call)
        waiting.start()
        wait_until(lambda: redis.Redis.from_url(redis_url).llen("landmark") == 1, 30, "the request's run sent")
        stopped_at = time.monotonic()
        facade.send_signal(signal.SIGTERM)
        assert facade.wait(timeout=STOP_GRACE + 10) == 0
        assert time.monotonic() - stopped_at < STOP_GRACE + 5
        waiting.join(timeout=10)
        assert outcome.get("code") == grpc.StatusCode.UNAVAILABLE  # cut off, as by any server that goes away
        assert "Image Input Service stopped" in (tmp_path / "facade.log").read_text()
    finally:
        if facade.poll() is None:
            facade.kill()
            facade.wait()
