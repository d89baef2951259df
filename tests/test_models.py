"""A worker process's models: those for busy moments and those for lone tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks import models
from tasks.imaging import decode_image


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("ORT_THREADS", "1")
    loaders = (models.face_detector, models.idle_face_detector, models.age_gender_estimator, models.idle_age_gender_estimator)
    for loader in loaders:
        loader.cache_clear()
    yield monkeypatch
    for loader in loaders:
        loader.cache_clear()


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


def test_a_lone_task_gets_an_estimator_with_both_views_at_once_and_the_same_answers(
    fresh: pytest.MonkeyPatch, t1_bytes: bytes
) -> None:
    fresh.setenv("IDLE_THREADS", "2")
    busy, lone = models.estimator_for(alone=False), models.estimator_for(alone=True)
    assert lone is models.idle_age_gender_estimator() and busy is models.age_gender_estimator()
    assert busy.estimator.twin is None and lone.estimator.twin is not None  # Abstaining(Mirrored(...))
    image = decode_image(t1_bytes, 10**8)
    faces = models.face_detector().detect(image)
    assert lone.estimate(image, faces) == busy.estimate(image, faces)


def test_no_second_estimator_without_the_mirrored_view(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv("IDLE_THREADS", "2")
    fresh.setenv("AGEGENDER_FLIP", "0")
    assert models.idle_age_gender_estimator() is None
    assert models.estimator_for(alone=True) is models.age_gender_estimator()
    assert models.idle_face_detector() is not None  # detection still gains from more threads


def test_no_second_models_when_idle_threads_are_no_more(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv("IDLE_THREADS", "1")
    assert models.idle_face_detector() is None and models.idle_age_gender_estimator() is None
    assert models.detector_for(alone=True) is models.face_detector()
    assert models.estimator_for(alone=True) is models.age_gender_estimator()
