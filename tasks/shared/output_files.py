"""The files of ``OUTPUT_DIR``: written so that a reader never sees half a file, and read
back as the outcome a request is answered with."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from tasks.shared.document import SUCCESS

_KEY = re.compile(r"[0-9a-f]{64}")  # an image's SHA-256: the only names these files take


class InvalidKey(ValueError):
    """Not a key this service makes (64 lowercase hex digits)."""


def check_key(key: str) -> str:
    """``key`` if it is an image key; :class:`InvalidKey` otherwise (it would become a path)."""
    if not _KEY.fullmatch(key):
        raise InvalidKey(f"an image key is 64 lowercase hex digits (a SHA-256), not {key[:80]!r}")
    return key


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def output_names(key: str) -> tuple[str, str]:
    """``(json, image)`` file names of an image inside ``OUTPUT_DIR``; they come only from its hash.

    Responses and documents carry these names, not paths: ``OUTPUT_DIR`` may be mounted at
    a different place on each machine.
    """
    return f"{key}.json", f"{key}.jpg"


def annotated_name(key: str) -> str:
    return f"{key}.annotated.jpg"


def output_paths(output_dir: Path, key: str) -> tuple[Path, Path]:
    """``(json_path, image_path)`` of an image on this machine."""
    json_name, image_name = output_names(key)
    return output_dir / json_name, output_dir / image_name


def annotated_path(output_dir: Path, key: str) -> Path:
    return output_dir / annotated_name(key)


def write_outputs(output_dir: Path, key: str, document: dict[str, Any], jpeg: bytes) -> None:
    """Write the image, then the JSON: once the JSON exists, both files are complete."""
    json_path, image_path = output_paths(output_dir, key)
    atomic_write(image_path, jpeg)
    atomic_write(json_path, json.dumps(document, indent=2).encode())


def read_outcome(output_dir: Path, key: str) -> dict[str, Any] | None:
    """The outcome of ``key`` rebuilt from its files in ``output_dir`` (as the storage task
    returned it), or None when it has no ``<key>.json`` there (:func:`check_key` first)."""
    json_path, _ = output_paths(output_dir, check_key(key))
    try:
        document = json.loads(json_path.read_text())
    except FileNotFoundError:
        return None
    json_name, image_name = output_names(key)
    drawn = annotated_name(key) if annotated_path(output_dir, key).exists() else ""
    storage = {
        "status": SUCCESS, "error": "", "runtime": 0.0,
        "json_path": json_name, "image_path": image_name, "annotated_path": drawn,
    }
    return {"document": document, "storage": storage}
