"""Output files written atomically and read back (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.shared.output_files import annotated_path, atomic_write, output_paths, read_outcome, write_outputs


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


def test_read_outcome_rebuilds_what_was_written(tmp_path: Path) -> None:
    key = "cd" * 32
    assert read_outcome(tmp_path, key) is None
    document = {"redis_key": key, "status": "Success", "faces": [{"age": 30.5}]}
    write_outputs(tmp_path, key, document, b"\xff\xd8\xffjpeg")
    outcome = read_outcome(tmp_path, key)
    assert outcome is not None and outcome["document"] == document
    assert outcome["storage"] == {
        "status": "Success", "error": "", "runtime": 0.0,
        "json_path": f"{key}.json", "image_path": f"{key}.jpg", "annotated_path": "",
    }
    atomic_write(annotated_path(tmp_path, key), b"\xff\xd8\xffdrawn")
    assert read_outcome(tmp_path, key)["storage"]["annotated_path"] == f"{key}.annotated.jpg"


@pytest.mark.parametrize("key", ["../" + "a" * 61, "AB" * 32, "ab" * 31, ""])
def test_read_outcome_takes_only_image_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="an image key is 64 lowercase hex digits"):
        read_outcome(tmp_path, key)
