"""Log format: the seed's text lines, or JSON with the request's key on every line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tasks.shared import logs
from tests.conftest import RunningStack


def capture(monkeypatch: pytest.MonkeyPatch, log_format: str) -> tuple[logging.Logger, io.StringIO]:
    monkeypatch.setenv("LOG_FORMAT", log_format)
    stream = io.StringIO()
    logger = logging.getLogger(f"test-{log_format}")
    logger.handlers[:] = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logs.apply(logger)
    return logger, stream


def test_json_lines_carry_the_request_key(monkeypatch: pytest.MonkeyPatch) -> None:
    logger, stream = capture(monkeypatch, "json")
    token = logs.request_key.set("ab" * 32)
    try:
        logger.info("Face Landmark Detection responded: %s", "Success")
    finally:
        logs.request_key.reset(token)
    logger.warning("outside a request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "Face Landmark Detection responded: Success"
    assert first["key"] == "ab" * 32 and first["level"] == "INFO" and first["time"]
    assert second["key"] == "" and second["level"] == "WARNING"


def test_text_lines_keep_the_seed_format(monkeypatch: pytest.MonkeyPatch) -> None:
    logger, stream = capture(monkeypatch, "text")
    logger.info("Processed %s: %s", "t1.jpg", "Success")
    line = stream.getvalue().strip()
    assert line.endswith(" - INFO - Processed t1.jpg: Success")
    assert line[:4].isdigit()


def test_every_process_logs_the_key_of_a_request(stack: RunningStack, image_input, t1_bytes: bytes) -> None:
    from proto import image_processing_pb2 as pb

    response = image_input.ProcessImage(pb.ImageRequest(image_data=t1_bytes), timeout=60)
    tag = f"[{response.redis_key[:12]}]"
    facade = (stack.log_dir / "facade.log").read_text()
    assert f"Face Landmark Detection responded: Success {tag}" in facade
    assert f"Age Gender Estimation responded: Success {tag}" in facade
    assert tag in (stack.log_dir / "worker-landmark.log").read_text()
    assert tag in (stack.log_dir / "worker-agegender.log").read_text()
    assert tag in (stack.log_dir / "worker-storage.log").read_text()


def test_celery_received_lines_get_the_key_from_the_task_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    logger, stream = capture(monkeypatch, "json")
    key = "0123456789abcdef" * 4
    logger.info("Task %(name)s[%(id)s] received", {"name": "tasks.landmark.detect_landmarks", "id": "t-1", "args": f"('{key}', 'run-1')"})
    line = json.loads(stream.getvalue())
    assert line["message"] == "Task tasks.landmark.detect_landmarks[t-1] received"
    assert line["key"] == key
