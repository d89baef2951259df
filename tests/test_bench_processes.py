"""bench/processes.py: finding a stack's processes and their roles in /proc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.processes import _role, cpu_by_role, cpu_per_item, stack_processes

WORKER = "python -m celery -A tasks worker -Q {queue} -n {queue}-1@host --concurrency 2"


def test_roles_from_command_lines() -> None:
    assert _role("/usr/bin/redis-server 127.0.0.1:6379", "launcher") == "redis"
    assert _role("python -m grpc_facade.server", "launcher") == "facade"
    assert _role("python -m celery -A tasks flower --port=5555", "launcher") == "flower"
    assert _role(WORKER.format(queue="agegender"), "launcher") == "agegender main"
    assert _role(WORKER.format(queue="agegender"), "agegender main") == "agegender pool"
    assert _role(WORKER.format(queue="storage"), "launcher") == "storage main"
    assert _role("sleep 5", "launcher") == "other"


def test_a_process_tree_is_walked_from_its_root() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        found = stack_processes(os.getpid())
        assert found[0].pid == os.getpid() and found[0].role == "launcher"
        assert child.pid in {process.pid for process in found}
        assert all(process.cpu_seconds >= 0 and process.rss_mb > 0 for process in found)
        assert all(0 < process.pss_mb <= process.rss_mb + 16 for process in found)  # read a moment apart
        assert cpu_by_role(os.getpid())["launcher"] > 0  # this test process has used some CPU
    finally:
        child.kill()
        child.wait()
    assert stack_processes(2**22 + 1) == []  # no such process


def test_cpu_per_item_between_two_readings() -> None:
    before = {"facade": 1.0, "redis": 0.5}
    after = {"facade": 1.8, "redis": 0.9, "storage pool": 0.4}  # a process that started meanwhile
    per_item = cpu_per_item(before, after, ("facade", "redis", "storage pool", "storage main"), 4)
    assert per_item == pytest.approx({"facade": 0.2, "redis": 0.1, "storage pool": 0.1, "storage main": 0.0})
