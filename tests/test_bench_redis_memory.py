"""bench/redis_memory.py: what each request leaves in a real Redis, and for how long."""

from __future__ import annotations

import re
import sys
from bench.redis_memory import kind
from tasks.shared import settings
from tests.conftest import run_script

KEY = "ab" * 32


def test_keys_are_told_apart_by_what_they_hold() -> None:
    assert kind(KEY) == "image"
    assert kind(f"{KEY}:landmark") == "landmark" and kind(f"{KEY}:result") == "result"
    assert kind("celery-task-meta-0b6a4c1e-6f1f-4a55-9a57-3f1d1f5a0e2d") == "Celery task result"
    assert kind("kept-results") == "kept results' index"
    assert kind("landmark") is None and kind("unacked") is None and kind("_kombu.binding.storage") is None


def test_requests_leave_their_image_briefly_and_their_result_long() -> None:
    done = run_script([sys.executable, "bench/redis_memory.py", "--images", "4", "--width", "640"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {match[1]: match[2].split(" | ") for match in re.finditer(r"^\| ([\w' ]+) \| (.+) \|$", done.stdout, re.MULTILINE)}
    config = settings.load()
    for name in ("image", "landmark", "agegender"):
        per_request, kib, expiry, _held = rows[name]
        assert float(per_request) >= 1 and float(kib) > 0
        assert 0 < int(expiry) <= config.after_run_ttl
    assert config.result_ttl - 60 < int(rows["result"][2]) <= config.result_ttl
    assert float(rows["image"][1]) > 5 * float(rows["result"][1])  # what the short expiry saves
    assert int(rows["kept results' index"][2]) == config.result_ttl  # its entries leave with their results
    assert float(rows["kept results' index"][1]) < float(rows["result"][1]) / 10  # about 100 bytes each

