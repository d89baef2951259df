"""bench/floor.py: empty runs of the service's task graph, through a real Redis and workers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_script

ROOT = Path(__file__).resolve().parent.parent


def test_empty_chords_go_through_real_workers_and_are_measured() -> None:
    done = run_script([sys.executable, "bench/floor.py", "--chords", "8", "--concurrency", "2", "--no-append"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {int(match[1]): match[2] for match in re.finditer(r"^\| (\d+) \| (.+) \|$", done.stdout, re.MULTILINE)}
    assert sorted(rows) == [1, 2]  # one at a time, then two in flight
    for cells in rows.values():
        p50, p95, rate, *cpu, total = (float(cell) for cell in cells.split(" | "))
        assert 0 < p50 <= p95 and rate > 0
        assert len(cpu) == 8 and total > 0  # client, Redis, and a main and a pool per queue
        assert cpu[0] > 0  # the client published and waited


def test_help() -> None:
    done = subprocess.run([sys.executable, "bench/floor.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "empty run of the service's task graph" in done.stdout
