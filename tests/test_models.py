"""A worker process's models: built once, prepared, and chosen by the queues it consumes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks import models
from tasks.backends.centerface import CenterFace
from tasks.backends.cydral import CydralAgeGender
from tasks.shared.imaging import decode_image


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("ORT_THREADS", "AGEGENDER_FLIP", "MIN_GENDER_CONFIDENCE", "LANDMARK_POINTS"):
        monkeypatch.delenv(name, raising=False)
    for loader in (models.face_detector, models.estimator):
        loader.cache_clear()
    yield monkeypatch
    for loader in (models.face_detector, models.estimator):
        loader.cache_clear()


def test_each_model_is_built_once_and_ready(fresh: pytest.MonkeyPatch, t1_bytes: bytes) -> None:
    detector, estimator = models.face_detector(), models.estimator("agegender")
    assert models.face_detector() is detector and models.estimator("agegender") is estimator
    assert isinstance(detector, CenterFace) and isinstance(estimator, CydralAgeGender)
    image = decode_image(t1_bytes, 10**8)
    faces = detector.detect(image)  # no prepare() needed: they come prepared
    assert len(estimator.estimate(image, faces)) == len(faces) == 6


def test_workers_load_only_what_their_queue_needs(fresh: pytest.MonkeyPatch) -> None:
    assert models.loaders("landmark") == (models.face_detector,)
    assert models.loaders("storage") == ()
    detector, estimator = models.loaders("agegender")
    assert detector is models.face_detector
    assert estimator() is models.estimator("agegender")
