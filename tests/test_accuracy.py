"""bench/accuracy.py: its matching rules on made-up boxes, and a run on the project's photos."""

from __future__ import annotations

import subprocess
import sys

import io

from PIL import Image

from bench.accuracy import Face, Photo, match, mosaics, read_labels, score
from tasks.shared.settings import PROJECT_ROOT

LABELS = PROJECT_ROOT / "images" / "labels.tsv"


def box(x1: float, y1: float, x2: float, y2: float) -> dict[str, float]:
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": 0.9}


def test_a_box_serves_the_label_nearest_its_centre_and_only_one() -> None:
    labels = (Face(10, 10, "M"), Face(14, 10, "F"), Face(100, 100, "F"))
    boxes = [box(0, 0, 30, 20), box(90, 90, 110, 110)]  # the first holds both points; its centre is (15, 10)
    assert match(labels, boxes) == {1: 0, 2: 1}


def test_score_counts_found_extra_and_genders() -> None:
    photo = Photo(LABELS, 1, 2, (Face(10, 10, "M"), Face(50, 50, "F"), Face(90, 90, "?")))
    faces = [
        {"box": box(0, 0, 20, 20), "gender": "Male"},
        {"box": box(40, 40, 60, 60), "gender": "Unknown"},
        {"box": box(80, 80, 99, 99), "gender": "Female"},
        {"box": box(200, 200, 220, 220), "gender": "Female"},
    ]
    result = score(photo, faces)
    assert (result.labelled, result.found, result.extra) == (3, 3, 2)
    assert (result.scored, result.right, result.unknown) == (2, 1, 1)  # "?" is not scored


def test_labels_of_the_projects_photos_are_read() -> None:
    photos = {photo.path.name: photo for photo in read_labels(LABELS)}
    assert len(photos["t1.jpg"].faces) == 6 and photos["t1.jpg"].min_faces == 6
    assert [face.gender for face in photos["astronaut.jpg"].faces] == ["F"]


def test_a_mosaic_moves_each_label_with_its_photo() -> None:
    photos = read_labels(LABELS)  # t1 (1280x886) and the astronaut (512x512)
    ((mosaic, data),) = mosaics(photos, 2)
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.size == (2560, 886)
    assert (mosaic.min_faces, len(mosaic.faces)) == (7, 7)
    astronaut = photos[1].faces[0]
    assert mosaic.faces[-1] == Face(astronaut.x + 1280, astronaut.y, "F")
    assert mosaic.faces[:6] == photos[0].faces


def test_the_default_finds_every_face_of_the_projects_photos() -> None:
    result = subprocess.run(
        [sys.executable, "bench/accuracy.py", str(LABELS), "--only-default"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| configured (default)"))
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    assert cells[0].startswith("7/7") and cells[1] == "0"  # every face found, no extra box
    right = int(cells[2].split("/")[0])
    assert right >= 6 and cells[3] == "0"  # at most t1's standing man wrong; nobody "Unknown"


def test_jitter_moves_every_box_one_pixel_each_way() -> None:
    result = subprocess.run(
        [sys.executable, "bench/accuracy.py", str(LABELS), "--jitter"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| as detected", "| moved 1 px"))]
    cells = [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows]
    assert [row[0] for row in cells] == ["as detected", "moved 1 px right", "moved 1 px left", "moved 1 px down", "moved 1 px up"]
    assert cells[0][2] == "0 of 7"  # the reference differs from nothing; t1's six faces and the astronaut
    assert cells[0][3] == "0.0 (0.0)"
    assert int(cells[0][1].split("/")[0]) >= 6  # the reference is the default pipeline's answers (see the test above)
    for _, right, changed, ages in cells:
        got, scored = right.split(" ")[0].split("/")
        assert scored == "7" and 0 <= int(got) <= 7
        assert changed.endswith(" of 7") and 0 <= int(changed.split(" of ")[0]) <= 7
        mean, largest = (float(value) for value in ages.replace("(", "").replace(")", "").split())
        assert 0 <= mean <= largest <= 80  # Cydral's ages run from 0 to 80
    assert any(float(row[3].split()[0]) > 0 for row in cells[1:])  # a moved box moves some age a little
