"""bench/speed.py's pure helpers (the measurement itself needs the stack: run the script)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from io import BytesIO

from PIL import Image

from bench.speed import distinct_copies, largest_process, p50_p95, resized
from tests.conftest import ASTRONAUT_JPG


def test_p50_and_p95_of_unordered_times() -> None:
    times = [float(n) for n in (20, 1, 19, 2, 18, 3, 17, 4, 16, 5, 15, 6, 14, 7, 13, 8, 12, 9, 11, 10)]
    assert p50_p95(times) == (10.5, 19.0)
    assert p50_p95([0.2]) == (0.2, 0.2)


def test_copies_are_distinct_images_of_the_requested_width() -> None:
    data = resized(ASTRONAUT_JPG, 320)
    copies = distinct_copies(data, 5)
    assert len(set(copies)) == 5
    assert all(Image.open(BytesIO(copy)).size == Image.open(BytesIO(data)).size for copy in copies)
    assert Image.open(BytesIO(data)).width == 320


def test_both_baselines_find_and_estimate_the_six_faces_of_t1(t1_bytes: bytes) -> None:
    from bench import baselines

    assert baselines.run("plain", t1_bytes) == 6
    assert baselines.run("lean", t1_bytes) == 6
    assert baselines.run("lean", resized(ASTRONAUT_JPG, 320)) == 1  # another input shape, another session


def test_the_lean_pipelines_network_input_is_what_opencv_would_build(t1_bytes: bytes) -> None:
    import cv2
    import numpy as np

    from bench.baselines import network_input

    image = cv2.imdecode(np.frombuffer(t1_bytes, np.uint8), cv2.IMREAD_COLOR_RGB)[:427, :640]  # 427: stretched to 448
    for height, width in ((448, 640), (427, 640)):
        expected = cv2.dnn.blobFromImage(image, 1.0, (width, height))
        assert network_input(image, height, width).shape == expected.shape
        assert np.array_equal(network_input(image, height, width), expected)


def test_the_largest_worker_process_is_named_with_its_memory() -> None:
    # Two stand-ins for worker processes (their command lines name a queue); the larger holds 64 MB more.
    small = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-Q", "storage", "x"])
    large = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 << 20); time.sleep(30)", "-Q", "landmark", "x"])
    try:
        deadline = time.monotonic() + 20
        while largest_process(os.getpid())[1] < 64 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the larger one has allocated its bytes
        role, megabytes = largest_process(os.getpid())
        assert role == "landmark main" and megabytes > 64
    finally:
        for child in (small, large):
            child.kill()
            child.wait()
