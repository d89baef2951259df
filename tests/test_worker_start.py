"""A worker whose models cannot load stops at start and says why (it does not fail
every task later, nor restart its pool forever)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import RunningStack


def test_worker_without_its_model_pack_stops_at_start(stack: RunningStack, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        REDIS_URL=stack.redis_url,
        LANDMARK_BACKEND="insightface",
        INSIGHTFACE_HOME=str(tmp_path / "insightface"),
        PYTHONPATH=str(PROJECT_ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "landmark", "-n", "doomed@%h",
         "--concurrency", "1", "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert "cannot load the models for queue landmark, stopping this worker" in output
    assert str(tmp_path / "insightface" / "models" / "buffalo_l") in output  # where the pack must be
    assert output.count("cannot load the models") <= 2  # stopped, not restarted again and again
