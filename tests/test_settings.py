"""Configuration from the environment: the per-queue pool sizes and their shared default,
and the age/gender options that are off by default."""

from __future__ import annotations

import pytest

from tasks import QUEUES


from tasks.shared import settings


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("WORKER_CONCURRENCY", *(f"{queue.upper()}_CONCURRENCY" for queue in QUEUES)):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def sizes() -> dict[str, int]:
    config = settings.load()
    return {queue: config.concurrency(queue) for queue in QUEUES}


def test_defaults_give_detection_two_processes(clean: pytest.MonkeyPatch) -> None:
    assert sizes() == {"landmark": 2, "agegender": 1, "storage": 1}


def test_worker_concurrency_is_the_default_of_every_queue(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("WORKER_CONCURRENCY", "3")
    assert sizes() == {"landmark": 3, "agegender": 3, "storage": 3}


def test_a_queue_of_its_own_wins(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("WORKER_CONCURRENCY", "3")
    clean.setenv("AGEGENDER_CONCURRENCY", "5")
    assert sizes() == {"landmark": 3, "agegender": 5, "storage": 3}


def test_a_bad_number_names_the_variable(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("STORAGE_CONCURRENCY", "two")
    with pytest.raises(ValueError, match="STORAGE_CONCURRENCY"):
        settings.load()


def test_every_face_gets_the_models_best_gender_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGEGENDER_FLIP", raising=False)
    monkeypatch.delenv("MIN_GENDER_CONFIDENCE", raising=False)
    config = settings.load()
    assert (config.agegender_flip, config.min_gender_confidence) == (False, 0.0)
    monkeypatch.setenv("AGEGENDER_FLIP", "1")
    monkeypatch.setenv("MIN_GENDER_CONFIDENCE", "0.75")
    config = settings.load()
    assert (config.agegender_flip, config.min_gender_confidence) == (True, 0.75)
