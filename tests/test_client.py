"""The command-line client: unit tests of its helpers, then the real command against the stack."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from grpc_facade.client import Outcome, expand, summary_table
from proto import image_processing_pb2 as pb
from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import RunningStack, variant


def test_expand_takes_files_folders_and_globs(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.webp").write_bytes(b"x")
    assert expand([str(tmp_path)]) == [tmp_path / "a.PNG", tmp_path / "b.jpg"]
    assert expand([str(tmp_path / "*.jpg"), str(tmp_path / "sub")]) == [tmp_path / "b.jpg", tmp_path / "sub" / "c.webp"]
    assert expand([str(tmp_path / "missing.jpg")]) == [tmp_path / "missing.jpg"]  # reported as unreadable later


def test_summary_table_shows_faces_and_failures() -> None:
    response = pb.CombinedResponse(status="Success", faces=[pb.Face(age=31, gender="Male"), pb.Face(age=25.4, gender="Female")])
    response.storage_response.json_path = "/out/k.json"
    table = summary_table([Outcome(Path("a.jpg"), response), Outcome(Path("b.jpg"), error="INVALID_ARGUMENT: bad")])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["image", "status", "faces"]
    assert lines[1].split()[:5] == ["a.jpg", "Success", "2", "31,25", "M,F"]
    assert "/out/k.json" in lines[1]
    assert lines[2].split()[:2] == ["b.jpg", "Failure"] and "INVALID_ARGUMENT: bad" in lines[2]


def run_client(stack: RunningStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grpc_facade.client", "--target", stack.target, "--no-progress", *args],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )


def test_cli_sends_a_folder_and_fails_on_a_bad_file(stack: RunningStack, tmp_path: Path, astronaut_bytes: bytes, t1_bytes: bytes) -> None:
    (tmp_path / "1-astronaut.jpg").write_bytes(variant(astronaut_bytes, 20))
    (tmp_path / "2-group.jpg").write_bytes(variant(t1_bytes, 20))
    (tmp_path / "3-broken.jpg").write_bytes(b"not a jpeg")
    result = run_client(stack, str(tmp_path), "--concurrency", "3", "--json")
    assert result.returncode == 1, result.stderr
    outcomes = json.loads(result.stdout)
    assert [Path(o["image"]).name for o in outcomes] == ["1-astronaut.jpg", "2-group.jpg", "3-broken.jpg"]
    assert [len(o["response"]["faces"]) for o in outcomes[:2]] == [1, 6]
    assert outcomes[2]["response"] is None and outcomes[2]["error"].startswith("INVALID_ARGUMENT")
    assert "Processed 1-astronaut.jpg: Success" in result.stderr
    assert "Landmark Detection: Success, Runtime:" in result.stderr


def test_cli_gets_a_stored_result_by_key(stack: RunningStack, tmp_path: Path, astronaut_bytes: bytes) -> None:
    data = variant(astronaut_bytes, 21)
    (tmp_path / "one.jpg").write_bytes(data)
    assert run_client(stack, str(tmp_path / "one.jpg")).returncode == 0
    key = hashlib.sha256(data).hexdigest()
    result = run_client(stack, "--get", key)
    assert result.returncode == 0, result.stderr
    assert key in result.stdout and "Success" in result.stdout
    assert run_client(stack, "--get", "f" * 64).returncode == 1


def test_cli_help() -> None:
    result = subprocess.run([sys.executable, "-m", "grpc_facade.client", "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0
    assert "--concurrency" in result.stdout and "--get" in result.stdout
