"""Stages as data: a per-face stage added with one class and one registry entry
(``STAGE_PLUGINS``) runs on its own queue, end to end through gRPC into the JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from grpc_facade.stack import health_serving
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared import graph
from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import free_port
from tests.tiny_stage import Brightness

PLUGIN = "brightness=tests.tiny_stage:build"


def test_the_tiny_network_measures_brightness() -> None:
    model = Brightness()
    model.prepare()
    from tasks.backends.base import Box, DetectedFace

    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 40:] = 255
    dark, light = model.estimate(image, [DetectedFace(Box(0, 0, 40, 40, 1), ()), DetectedFace(Box(40, 0, 80, 40, 1), ())])
    assert dark == {"brightness": 0.0, "tone": "dark"} and light == {"brightness": 1.0, "tone": "light"}


def test_stage_plugins_name_a_stage_by_its_estimator() -> None:
    (stage,) = graph.plugins(PLUGIN)
    assert (stage.name, stage.estimator, stage.task_name) == ("brightness", "tests.tiny_stage:build", "tasks.brightness.estimate")
    with pytest.raises(ValueError, match="name=module:function"):
        graph.plugins("brightness")


@pytest.fixture(scope="module")
def stack_with_a_new_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    base = tmp_path_factory.mktemp("new-stage")
    port = free_port()
    env = dict(
        os.environ, STAGE_PLUGINS=PLUGIN, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", GRPC_PORT=str(port),
        METRICS_PORT=str(free_port()), OUTPUT_DIR=str(base / "output"), PYTHONPATH=str(PROJECT_ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "grpc_facade.stack", "serve", "--no-flower", "--log-dir", str(base / "logs")],
        env=env, cwd=PROJECT_ROOT, stdout=open(base / "stack.log", "wb"), stderr=subprocess.STDOUT,
    )
    target = f"localhost:{port}"
    deadline = time.monotonic() + 240
    while not health_serving(target):  # SERVING only once a worker consumes the new queue too
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the stack did not start:\n" + (base / "stack.log").read_text()[-5000:])
        time.sleep(0.5)
    try:
        yield target, base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_new_stage_runs_on_its_own_queue_into_the_answer_and_the_json(
    stack_with_a_new_stage: tuple[str, Path], t1_bytes: bytes
) -> None:
    target, base = stack_with_a_new_stage
    with grpc.insecure_channel(target) as channel:
        response = pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=t1_bytes), timeout=60)
    assert response.status == "Success" and len(response.faces) == 6
    assert response.other_stages["brightness"].status == "Success"
    for face in response.faces:
        assert 0 < face.values["brightness"] < 1 and face.labels["tone"] in {"light", "dark"}
        assert face.gender in {"Male", "Female"} and face.found_by == "both"  # age/gender still there
    document = json.loads((base / "output" / response.storage_response.json_path).read_text())
    assert document["stages"]["brightness"]["status"] == "Success"
    assert [f["brightness"] for f in document["faces"]] == pytest.approx([f.values["brightness"] for f in response.faces])
    worker_log = (base / "logs" / "worker-brightness.log").read_text()
    assert "brightness: Success, faces: 6" in worker_log  # its own worker, on its own queue, ran it
