"""Every command answers --help, and run.sh says what it does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import free_port


@pytest.mark.parametrize("module", ["grpc_facade.server", "grpc_facade.stack", "grpc_facade.client"])
def test_python_commands_have_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m " + module)


@pytest.mark.parametrize(
    "script",
    ["bench/load.py", "bench/speed.py", "bench/ab.py", "bench/cpu.py", "bench/timeline.py", "bench/accuracy.py", "bench/redis_memory.py", "tasks/backends/weights/convert_faceres.py"],
)
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


@contextlib.contextmanager
def launcher(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, tuple[str, str]]]:
    """``python -m grpc_facade.stack serve`` on free ports, output piped; yields it and
    what marks its children (see :func:`processes_with`). Whatever of it is still running
    afterwards (a failed test) is killed."""
    redis_address = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, REDIS_URL=f"redis://{redis_address}/0", GRPC_PORT=str(free_port()),
               METRICS_PORT=str(free_port()), OUTPUT_DIR=str(tmp_path / "out"), PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "grpc_facade.stack", "serve", "--no-flower", "--log-dir", str(tmp_path / "logs")],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    markers = (env["OUTPUT_DIR"], redis_address)
    try:
        yield process, markers
    finally:
        process.kill()
        process.wait()
        for pid in processes_with(markers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_stack_stops_promptly_when_interrupted_while_starting(tmp_path: Path) -> None:
    with launcher(tmp_path) as (process, markers):
        deadline = time.monotonic() + 60
        while not (tmp_path / "logs" / "facade.log").exists():  # starting: children are up, not yet serving
            assert time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)  # well before the 180 s start-up limit
        assert process.returncode == 0
        assert "interrupted; stopping the stack" in output and "stack stopped" in output
        assert "stack ready" not in output
        assert processes_with(markers) == []  # every child it had started is gone


def test_a_second_signal_while_stopping_still_stops_every_child(tmp_path: Path) -> None:
    # A supervisor that sends SIGTERM again (or a user pressing Ctrl-C twice) must not cut
    # the stop short and leave workers behind.
    with launcher(tmp_path) as (process, markers):
        lines = []
        while not lines or "serving until Ctrl-C" not in lines[-1]:  # the stack is up, workers ready
            lines.append(process.stdout.readline())
            assert lines[-1], "the launcher exited:\n" + "".join(lines)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the launcher is stopping its children now, each taking a second or more
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
        assert "stack stopped" in output
        assert processes_with(markers) == []


def processes_with(markers: tuple[str, str]) -> list[int]:
    """The launcher's children: processes whose environment holds its output folder, or
    whose command line its Redis address (redis-server writes its title over both)."""
    folder, redis_address = (marker.encode() for marker in markers)
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (
                folder in (entry / "environ").read_bytes() or redis_address in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_readme_documents_every_setting() -> None:
    import re

    source = (PROJECT_ROOT / "tasks" / "shared" / "settings.py").read_text()
    variables = set(re.findall(r'_env_\w+\("([A-Z_]+)"', source)) | set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', source))
    assert len(variables) > 20
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Logs")]
    assert sorted(v for v in variables if f"`{v}`" not in table) == []
