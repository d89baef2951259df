"""tasks/backends/onnx_session.py: one thread while other work fills every core, the
configured threads otherwise, with the same answers either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.backends import onnx_session
from tasks.backends.centerface import CenterFace
from tasks.backends.onnx_session import CpuSession, machine_busy


def loadavg(tmp_path: Path, runnable: int) -> Path:
    path = tmp_path / "loadavg"
    path.write_text(f"0.52 0.61 0.70 {runnable}/312 4242\n")
    return path


def test_busy_when_other_runnable_threads_fill_every_core(tmp_path: Path) -> None:
    # The caller is one of the runnable threads.
    assert not machine_busy(loadavg(tmp_path, 1), cores=2)
    assert not machine_busy(loadavg(tmp_path, 2), cores=2)
    assert machine_busy(loadavg(tmp_path, 3), cores=2)
    assert machine_busy(loadavg(tmp_path, 9), cores=8)


def test_unreadable_load_counts_as_not_busy(tmp_path: Path) -> None:
    assert not machine_busy(tmp_path / "missing", cores=2)
    (tmp_path / "garbled").write_text("nonsense\n")
    assert not machine_busy(tmp_path / "garbled", cores=2)


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="needs Linux's /proc/loadavg")
def test_reads_this_machine() -> None:
    assert machine_busy() in (True, False)


class Spy:
    """Records which of the two sessions ran."""

    def __init__(self, session, name: str, used: list[str]) -> None:
        self.session, self.name, self.used = session, name, used

    def run(self, *args):
        self.used.append(self.name)
        return self.session.run(*args)


def test_both_sessions_give_the_same_answer(monkeypatch: pytest.MonkeyPatch, t1_bytes: bytes) -> None:
    detector = CenterFace(threads=2, max_side=320)
    detector.prepare()
    session = detector._session
    assert isinstance(session, CpuSession)
    blob = np.random.default_rng(1).uniform(0, 255, (1, 3, 224, 320)).astype(np.float32)
    feeds = {session.get_inputs()[0].name: blob}
    used: list[str] = []
    for name in ("_narrow", "_wide"):
        real = getattr(session, name)
        monkeypatch.setattr(session, name, Spy(real, name, used))
    monkeypatch.setattr(onnx_session, "machine_busy", lambda: True)
    narrow = session.run(None, feeds)
    monkeypatch.setattr(onnx_session, "machine_busy", lambda: False)
    wide = session.run(None, feeds)
    assert used == ["_narrow", "_wide"]
    for a, b in zip(narrow, wide, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_one_thread_needs_one_session() -> None:
    detector = CenterFace(threads=1, max_side=320)
    detector.prepare()
    assert detector._session._wide is None
