"""The load test script, run small against the session's stack: nothing lost."""

from __future__ import annotations

import subprocess
import sys

from bench.load import image_mix
from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import RunningStack


def test_load_script_loses_nothing(stack: RunningStack) -> None:
    env = {"REDIS_URL": stack.redis_url, "OUTPUT_DIR": str(stack.output_dir), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--target", stack.target, "--requests", "60", "--concurrency", "16",
         "--distinct", "12", "--max-seconds", "300"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(line.rsplit(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert counts["answered OK"] == "60"
    assert counts["distinct images succeeded"] == "12"
    assert counts["messages left in queues"] == "0"
    assert counts["worker processes replaced"] == "0"


def test_load_script_refuses_other_hosts() -> None:
    result = subprocess.run([sys.executable, "bench/load.py", "--target", "10.0.0.1:50051"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 2 and "localhost" in result.stderr


def test_the_mix_has_as_many_different_images_as_asked() -> None:
    payloads = image_mix(PROJECT_ROOT / "images", 500, 450)  # over 40 copies of each photo
    assert len(payloads) == 500 and len(set(payloads)) == 450
