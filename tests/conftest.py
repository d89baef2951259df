"""Shared fixtures: real images, and one real stack (Redis, Celery workers, gRPC facade).

The stack is started exactly as users start it (``python -m grpc_facade.stack serve``),
on free ports, with a private Redis and output folder, once per test session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import insightface
import numpy as np
import pytest
import redis
from celery import Celery
from PIL import Image

from grpc_facade.stack import Stack, free_port, health_serving, redis_answers, redis_server_argv, wait_until
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared import settings
from tasks.shared.settings import PROJECT_ROOT

T1_JPG = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
ASTRONAUT_JPG = PROJECT_ROOT / "images" / "astronaut.jpg"


@pytest.fixture(scope="session")
def t1_bytes() -> bytes:
    """insightface's group photo: 6 faces (3 women, 3 men), 1280x886."""
    return T1_JPG.read_bytes()


@pytest.fixture(scope="session")
def astronaut_bytes() -> bytes:
    """scikit-image's public-domain astronaut portrait: one woman."""
    return ASTRONAUT_JPG.read_bytes()


@pytest.fixture(scope="session")
def no_face_bytes() -> bytes:
    """A smooth colour gradient: an image with no face in it."""
    y, x = np.mgrid[0:240, 0:320]
    pixels = np.stack([x * 255 // 320, y * 255 // 240, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def crowd_bytes() -> bytes:
    """2560x1600, 60 faces: t1 at half size (its faces near the detector's limit when the
    picture is scaled to 640 px) beside nine copies at a third (theirs below that limit)."""
    t1 = Image.open(T1_JPG).convert("RGB")
    canvas = Image.new("RGB", (2560, 1600), (90, 110, 90))
    canvas.paste(t1.resize((640, 443)), (0, 0))
    small = t1.resize((400, 277))
    for spot in [(800, 100), (1400, 100), (2000, 100), (100, 700), (700, 700), (1300, 700), (1900, 700), (100, 1200), (700, 1200)]:
        canvas.paste(small, spot)
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def variant(data: bytes, n: int) -> bytes:
    """The same picture re-encoded: different bytes (so a different key), same faces."""
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.save(buffer, format="JPEG", quality=90 - n)
    return buffer.getvalue()


FLOWER_USER, FLOWER_PASSWORD = "tester", "not-a-real-secret"


@dataclass
class RunningStack:
    target: str
    redis_url: str
    output_dir: Path
    log_dir: Path
    channel: grpc.Channel
    flower_url: str
    metrics_url: str

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def worker_processes(self) -> dict[str, list[int]]:
        """Each worker's pool process ids: they change when a pool process dies."""
        inspector = Celery(broker=self.redis_url, backend=self.redis_url).control.inspect(timeout=5, limit=3)
        return {name: sorted(s["pool"]["processes"]) for name, s in (inspector.stats() or {}).items()}

    def tasks_run(self, task_name: str) -> int:
        """How many times the stack's workers have run ``task_name`` since they started."""
        inspector = Celery(broker=self.redis_url, backend=self.redis_url).control.inspect(timeout=5, limit=3)  # 3 workers: one per queue
        stats = inspector.stats() or {}
        assert stats, "no worker answered the stats request"
        return sum(worker["total"].get(task_name, 0) for worker in stats.values())


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    base = tmp_path_factory.mktemp("stack")
    grpc_port, flower_port, metrics_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        GRPC_PORT=str(grpc_port),
        FLOWER_PORT=str(flower_port),
        METRICS_PORT=str(metrics_port),
        FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        OUTPUT_DIR=str(base / "output"),
        REQUEST_TIMEOUT="60",
        PYTHONPATH=str(PROJECT_ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "grpc_facade.stack", "serve", "--log-dir", str(base / "logs")],
        env=env, cwd=PROJECT_ROOT, stdout=open(base / "stack.log", "wb"), stderr=subprocess.STDOUT,
    )
    target = f"localhost:{grpc_port}"
    deadline = time.monotonic() + 240
    # Ready as a user sees it: the launcher's "stack ready" line (it comes after the
    # facade is healthy and the workers were asked to send Flower their task events).
    while "stack ready" not in (base / "stack.log").read_text(errors="replace") or not health_serving(target):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the stack did not start:\n" + (base / "stack.log").read_text()[-5000:])
        time.sleep(0.5)
    channel = grpc.insecure_channel(target)
    try:
        yield RunningStack(
            target, env["REDIS_URL"], base / "output", base / "logs", channel, f"http://localhost:{flower_port}",
            f"http://localhost:{metrics_port}/metrics",
        )
    finally:
        channel.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def image_input(stack: RunningStack) -> pb_grpc.ImageInputStub:
    return pb_grpc.ImageInputStub(stack.channel)


@contextlib.contextmanager
def private_redis(directory: Path, *args: str) -> Iterator[str]:
    """A redis-server of its own on a free port (``args`` added to its command line); yields its URL."""
    port = free_port()
    process = subprocess.Popen([*redis_server_argv(port, directory), *args], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis_answers(url), 15, "redis-server", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def private_stack(base: Path, redis_url: str = "", **env: str) -> Iterator[Stack]:
    """A stack of this test module's own (free ports, own Redis and output folder), run in
    this process through ``grpc_facade.stack.Stack`` so a test can kill and restart parts.
    ``env`` is given to every process of it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        config = dataclasses.replace(
            settings.load(),
            redis_url=redis_url or f"redis://127.0.0.1:{free_port()}/0",
            grpc_port=free_port(),
            metrics_port=free_port(),
            output_dir=base / "output",
        )
        stack = Stack(config, flower=False, log_dir=base / "logs")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def process_once(stack: Stack, data: bytes) -> tuple[pb.CombinedResponse, dict]:
    """``ProcessImage`` on ``stack`` over a fresh channel: the response and the JSON it wrote."""
    with grpc.insecure_channel(stack.grpc_target) as channel:
        response = pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=data), timeout=60)
    return response, json.loads((stack.config.output_dir / response.storage_response.json_path).read_text())


def run_script(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a script that starts servers of its own (a bench script) in its own process
    group. Should it hang, the whole group gets SIGTERM (a stack launcher in it stops its
    children in order), then SIGKILL, so that no process outlives the test."""
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def kill(stack: Stack, name: str) -> None:
    """SIGKILL a child of ``stack`` with all its processes (a worker and its pool)."""
    process = stack.child(name).process
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


SERVICES = ["ProcessImage", "DetectLandmarks", "EstimateAgeGender", "StoreData"]


def call_service(stack: RunningStack, service: str, data: bytes, timeout: float = 30):
    """Send ``data`` to one of the four services."""
    if service == "ProcessImage":
        return pb_grpc.ImageInputStub(stack.channel).ProcessImage(pb.ImageRequest(image_data=data), timeout=timeout)
    if service == "DetectLandmarks":
        return pb_grpc.FaceLandmarkDetectionStub(stack.channel).DetectLandmarks(pb.LandmarkRequest(image_data=data), timeout=timeout)
    if service == "EstimateAgeGender":
        return pb_grpc.AgeGenderEstimationStub(stack.channel).EstimateAgeGender(pb.AgeGenderRequest(image_data=data), timeout=timeout)
    return pb_grpc.DataStorageStub(stack.channel).StoreData(pb.StorageRequest(image_data=data), timeout=timeout)
