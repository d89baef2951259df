"""Every command answers --help, and run.sh says what it does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.settings import PROJECT_ROOT


@pytest.mark.parametrize("module", ["grpc_facade.server", "grpc_facade.stack", "grpc_facade.client"])
def test_python_commands_have_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m " + module)


@pytest.mark.parametrize("script", ["bench/load.py", "bench/speed.py", "bench/accuracy.py"])
def test_bench_scripts_have_help(script: str) -> None:
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")


def test_run_sh_help_lists_its_commands() -> None:
    result = subprocess.run([str(PROJECT_ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in ("./run.sh ", "./run.sh serve", "./run.sh test", "./run.sh client", "./run.sh setup"):
        assert command in result.stdout


def test_run_sh_rejects_an_unknown_command() -> None:
    result = subprocess.run([str(PROJECT_ROOT / "run.sh"), "frobnicate"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "unknown command" in result.stderr
