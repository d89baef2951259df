"""The code passes the linter (pyflakes rules: undefined names, unused imports)."""

from __future__ import annotations

import subprocess
import sys

from tasks.shared.settings import PROJECT_ROOT


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "tasks", "grpc_facade", "bench", "tests", "celeryconfig.py"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
