"""Atomic output files (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.shared.output_files import atomic_write, output_paths, write_outputs


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_atomic_write_failure_leaves_no_partial_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a.json"
    blocker.mkdir()  # the final rename cannot replace a folder
    with pytest.raises(OSError):
        atomic_write(blocker, b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert blocker.is_dir()


def test_write_outputs_names_files_by_key(tmp_path: Path) -> None:
    key = "ab" * 32
    write_outputs(tmp_path, key, {"redis_key": key}, b"\xff\xd8\xffjpeg")
    json_path, image_path = output_paths(tmp_path, key)
    assert json_path == tmp_path / f"{key}.json" and image_path == tmp_path / f"{key}.jpg"
    assert json.loads(json_path.read_text()) == {"redis_key": key}
    assert image_path.read_bytes() == b"\xff\xd8\xffjpeg"
