"""bench/timeline.py: a request's steps from the stages' log lines."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bench.timeline import STEPS, stage_spans, steps_of

KEY = "0123456789ab"


def at(clock: str) -> float:
    return datetime.strptime(f"2026-11-26 10:00:{clock}", "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_spans_and_steps_from_log_lines(tmp_path: Path) -> None:
    (tmp_path / "worker-landmark.log").write_text(
        f"[2026-11-26 10:00:01,200: INFO/ForkPoolWorker-1] [{KEY}] landmark: Success, faces: 6, Runtime: 0.150\n"
        "[2026-11-26 10:00:01,201: INFO/ForkPoolWorker-1] Task tasks.landmark.detect_landmarks[x] succeeded\n"
    )
    (tmp_path / "worker-agegender.log").write_text(
        f"[2026-11-26 10:00:01,303: INFO/ForkPoolWorker-1] [{KEY}] agegender: Success, faces: 6, Runtime: 0.100\n"
    )
    (tmp_path / "worker-storage.log").write_text(
        f"[2026-11-26 10:00:01,320: INFO/ForkPoolWorker-1] [{KEY}] storage: Success, Runtime: 0.006\n"
    )
    spans = stage_spans(tmp_path)
    assert spans[KEY, "landmark"] == pytest.approx((at("01,050"), at("01,200")))
    steps = dict(zip(STEPS, steps_of(KEY, at("01,030"), at("01,330"), spans), strict=True))
    assert steps["client to detection start"] == pytest.approx(0.020, abs=1e-6)
    assert steps["landmark end to age/gender start"] == pytest.approx(0.003, abs=1e-6)
    assert steps["age/gender end to storage start"] == pytest.approx(0.011, abs=1e-6)
    assert steps["storage end to client"] == pytest.approx(0.010, abs=1e-6)
    assert steps["total"] == pytest.approx(0.300, abs=1e-6)
