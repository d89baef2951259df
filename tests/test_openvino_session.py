"""tasks/backends/openvino_session.py, tasks/backends/engines.py, AGEGENDER_BF16 and
DETECT_BF16: networks run by OpenVINO give onnxruntime's answers (exactly in float32,
closely in bfloat16), and the settings pick which engine the service runs them on."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tasks import stages
from tasks.backends import openvino_session, router
from tasks.backends.base import DetectedFace
from tasks.backends.centerface import CenterFace
from tasks.backends.cydral import CydralAgeGender, bundled_models
from tasks.backends.onnx_session import cpu_session
from tasks.backends.openvino_session import OpenVinoSession, effective_precision, native_bf16
from tasks.shared import settings
from tasks.shared.imaging import decode_image
from tests.conftest import private_stack, process_once

needs_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bfloat16")
GENDER_NETWORK = str(bundled_models() / "gender-v1.onnx")


def chips(count: int, side: int) -> np.ndarray:
    return np.random.default_rng(7).normal(0, 0.5, (count, 3, side, side)).astype(np.float32)


def test_precision_falls_back_to_float32_without_native_bfloat16() -> None:
    assert effective_precision("bf16", native=True) == "bf16"
    assert effective_precision("bf16", native=False) == "f32"
    assert effective_precision("f32", native=True) == "f32"
    with pytest.raises(ValueError, match="bf16, f32"):
        effective_precision("int8")


@pytest.mark.parametrize("batch", [1, 6])
def test_float32_gives_onnxruntimes_probabilities(batch: int) -> None:
    theirs = cpu_session(GENDER_NETWORK, 1)
    ours = OpenVinoSession(GENDER_NETWORK, precision="f32")
    assert [port.name for port in ours.get_inputs()] == [port.name for port in theirs.get_inputs()]
    assert [port.name for port in ours.get_outputs()] == [port.name for port in theirs.get_outputs()]
    feeds = {"images": chips(batch, 32)}
    expected, = theirs.run(None, feeds)
    got, = ours.run(None, feeds)
    assert got.shape == expected.shape == (batch, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@needs_bf16
def test_bfloat16_stays_close_and_results_survive_the_next_run() -> None:
    session = OpenVinoSession(GENDER_NETWORK)
    assert session.precision == "bf16"
    first, second = chips(6, 32), chips(3, 32) + 1
    kept, = session.run(["probabilities"], {"images": first})
    session.run(None, {"images": second})  # reuses OpenVINO's output buffers
    expected, = cpu_session(GENDER_NETWORK, 1).run(None, {"images": first})
    np.testing.assert_allclose(kept, expected, atol=2e-2)


@needs_bf16
def test_cydral_in_bfloat16_gives_the_same_genders_and_close_ages(t1_bytes: bytes, astronaut_bytes: bytes) -> None:
    detector = CenterFace(max_side=640)
    detector.prepare()
    exact, fast = CydralAgeGender(), CydralAgeGender(bf16=True)
    exact.prepare()
    fast.prepare()
    assert isinstance(fast._age.session, OpenVinoSession) and not isinstance(exact._age.session, OpenVinoSession)
    for data in (t1_bytes, astronaut_bytes):
        image = decode_image(data, 10**8)
        faces = detector.detect(image)
        for a, b in zip(exact.estimate(image, faces), fast.estimate(image, faces), strict=True):
            assert a.gender == b.gender
            assert abs(a.age - b.age) < 1.5 and abs(a.gender_confidence - b.gender_confidence) < 0.02


def test_bfloat16_is_the_default_and_float32_does_not_load_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGEGENDER_BF16", raising=False)
    config = dataclasses.replace(settings.load(), agegender_backend="embedded", agegender_flip=False, min_gender_confidence=0)
    assert config.agegender_bf16 and router.build_age_gender_estimator(config).bf16
    assert not router.build_age_gender_estimator(dataclasses.replace(config, agegender_bf16=False)).bf16
    probe = ("import sys; from tasks.backends.cydral import CydralAgeGender; from tasks.backends.centerface import CenterFace; "
             "CydralAgeGender(bf16=False).prepare(); CenterFace().prepare(); print('openvino' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=settings.PROJECT_ROOT, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_no_native_bfloat16_means_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_session, "native_bf16", lambda: False)
    model, detector = CydralAgeGender(bf16=True), CenterFace(bf16=True)
    model.prepare()
    detector.prepare()
    assert not isinstance(model._age.session, OpenVinoSession)
    assert not isinstance(detector._session, OpenVinoSession)


@needs_bf16
def test_centerface_in_bfloat16_finds_the_same_faces_nearly_in_place(
    t1_bytes: bytes, astronaut_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    exact, fast = CenterFace(max_side=640), CenterFace(max_side=640, bf16=True)
    exact.prepare()
    with caplog.at_level(logging.INFO, logger="tasks.backends.engines"):
        fast.prepare()
    assert "centerface.onnx runs in bfloat16 on OpenVINO" in caplog.text
    assert isinstance(fast._session, OpenVinoSession) and not isinstance(exact._session, OpenVinoSession)
    for data in (t1_bytes, astronaut_bytes):
        image = decode_image(data, 10**8)
        expected, got = exact.detect(image), fast.detect(image)
        assert len(got) == len(expected) > 0
        for face in expected:
            assert max(face.box.iou(other.box) for other in got) > 0.9


def test_bfloat16_detection_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DETECT_BF16", raising=False)
    config = dataclasses.replace(settings.load(), landmark_backend="embedded", landmark_points=5)
    assert not config.detect_bf16 and not router.build_face_detector(config).bf16
    monkeypatch.setenv("DETECT_BF16", "1")
    assert router.build_face_detector(dataclasses.replace(settings.load(), landmark_backend="embedded", landmark_points=5)).bf16


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to tell pinning apart")
def test_inference_leaves_the_calling_thread_free_to_run_on_every_core() -> None:
    """OpenVINO's CPU pinning would tie the inferring thread to the first core, the same
    one in every worker process."""
    session = OpenVinoSession(GENDER_NETWORK)
    feeds = {"images": chips(64, 32)}
    cores, seen, done = os.sched_getaffinity(0), [], threading.Event()

    def infer() -> None:
        seen.append(threading.get_native_id())
        while not done.is_set():
            session.run(None, feeds)

    worker = threading.Thread(target=infer)
    worker.start()
    try:
        while not seen:
            time.sleep(0.01)
        for _ in range(50):
            assert os.sched_getaffinity(seen[0]) == cores
            time.sleep(0.01)
    finally:
        done.set()
        worker.join()


def test_the_service_answers_in_float32_when_told(tmp_path: Path, t1_bytes: bytes) -> None:
    """AGEGENDER_BF16=0: the service's answers are float32's to the digit (the default's
    genders are float32's too: see the bfloat16 test above)."""
    with private_stack(tmp_path, AGEGENDER_BF16="0") as stack:
        response, document = process_once(stack, t1_bytes)
    assert response.status == "Success"
    # What the float32 networks answer, through the very stage functions the workers run.
    config, detector, exact = stack.config, CenterFace(max_side=640), CydralAgeGender(bf16=False)
    detector.prepare()
    exact.prepare()
    found = stages.landmarks_from_bytes(t1_bytes, detector, config.max_image_pixels, 640, config.small_faces_max_side)
    faces = [DetectedFace.from_dict(face) for face in found["faces"]]
    expected = stages.per_face_from_bytes(t1_bytes, detector, exact, faces, config.max_image_pixels)["faces"]
    by_position = sorted(expected, key=lambda face: face["box"]["x1"])
    answered = sorted(document["faces"], key=lambda face: face["box"]["x1"])
    assert [face["gender"] for face in answered] == [face["gender"] for face in by_position]
    assert [face["age"] for face in answered] == pytest.approx([face["age"] for face in by_position], abs=1e-6)
