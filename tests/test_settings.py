"""Configuration from the environment: the per-queue pool sizes and their shared default,
and the threads a lone detection may use."""

from __future__ import annotations

import os
import socket

import pytest

from tasks import QUEUES, settings


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


def test_a_lone_detection_may_use_every_core_up_to_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDLE_THREADS", raising=False)
    assert settings.load().idle_threads == min(4, len(os.sched_getaffinity(0)))
    monkeypatch.setenv("IDLE_THREADS", "1")
    assert settings.load().idle_threads == 1


def test_cpu_claims_are_per_host_name_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CPU_HOST", raising=False)
    assert settings.load().cpu_host == socket.gethostname()
    monkeypatch.setenv("CPU_HOST", "rack-3")
    assert settings.load().cpu_host == "rack-3"
