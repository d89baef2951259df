"""Writing output files so that a reader never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


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
