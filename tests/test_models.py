"""A worker process's models: the detector for busy moments and the one for lone tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks import models
from tasks.imaging import decode_image


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("ORT_THREADS", "1")
    models.face_detector.cache_clear()
    models.idle_face_detector.cache_clear()
    yield monkeypatch
    models.face_detector.cache_clear()
    models.idle_face_detector.cache_clear()


def test_a_lone_task_gets_a_many_threaded_detector_that_finds_the_same_faces(
    fresh: pytest.MonkeyPatch, t1_bytes: bytes
) -> None:
    fresh.setenv("IDLE_THREADS", "2")
    busy, lone = models.detector_for(alone=False), models.detector_for(alone=True)
    assert (busy.threads, lone.threads) == (1, 2)
    assert lone is models.idle_face_detector() and busy is models.face_detector()
    image = decode_image(t1_bytes, 10**8)
    one, two = busy.detect(image), lone.detect(image)
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        assert (a.box.x1, a.box.y1, a.box.x2, a.box.y2) == pytest.approx((b.box.x1, b.box.y1, b.box.x2, b.box.y2), abs=0.5)


def test_no_second_detector_when_idle_threads_are_no_more(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv("IDLE_THREADS", "1")
    assert models.idle_face_detector() is None
    assert models.detector_for(alone=True) is models.face_detector()
