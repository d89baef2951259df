"""Accuracy on labelled group photos: faces found, extra boxes, genders right.

    .venv/bin/python bench/accuracy.py                       # ../shared/faces-dev and images/
    .venv/bin/python bench/accuracy.py my/labels.tsv --append

Each labels file is tab-separated, beside its photos, with the columns ``file``,
``width``, ``height``, ``min_faces``, ``max_faces`` and ``faces``: ``;``-separated
``x,y,G`` (a point on each face, its gender ``M``/``F``/``?``). A labelled face is found
when a reported box contains its point (each box serves one face, the nearest centre
first); boxes beyond ``max_faces`` are extra. Genders are scored on found faces whose
label is ``M`` or ``F``; any other answer ("Unknown") is not right.

The photos run through the service's own stage functions and backends (reduced decode
for detection, full picture for age/gender), once per configuration below; the first
is the service's default. ``--jitter`` instead measures how many genders change, and
how far ages move, when every detected box moves by one pixel: the noise floor against
which a change that moves boxes a little (bfloat16 or int8 detection, another resize)
is judged.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import append_to_section  # noqa: E402
from tasks import stages  # noqa: E402
from tasks.shared import settings  # noqa: E402
from tasks.backends import router  # noqa: E402
from tasks.backends.base import DetectedFace  # noqa: E402

DEFAULT_LABELS = [ROOT.parent / "shared" / "faces-dev" / "labels.tsv", ROOT / "images" / "labels.tsv"]
LETTER = {"Male": "M", "Female": "F"}

# name -> settings overrides; the first row is whatever the environment configures.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "configured (default)": {},
    "no second pass for small faces": {"small_faces_max_side": 0},
    "FaceRes for age and gender (opt-in)": {"agegender_backend": "faceres"},
    "age and gender in float32 (AGEGENDER_BF16=0)": {"agegender_bf16": False},
    "detection in bfloat16 (DETECT_BF16=1)": {"detect_bf16": True},
    "one view": {"agegender_flip": False, "min_gender_confidence": 0.0},
    "mirrored view averaged": {"agegender_flip": True, "min_gender_confidence": 0.0},
    "one view, Unknown below 0.75": {"agegender_flip": False, "min_gender_confidence": 0.75},
    "mirrored, Unknown below 0.75": {"agegender_flip": True, "min_gender_confidence": 0.75},
}


@dataclass(frozen=True)
class Face:
    x: float
    y: float
    gender: str  # "M", "F" or "?"


@dataclass(frozen=True)
class Photo:
    path: Path
    min_faces: int
    max_faces: int
    faces: tuple[Face, ...]


@dataclass
class Score:
    labelled: int = 0
    found: int = 0
    extra: int = 0
    scored: int = 0  # found faces with a known gender
    right: int = 0
    unknown: int = 0

    def add(self, other: Score) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def read_labels(path: Path) -> list[Photo]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    photos = []
    for row in rows:
        faces = []
        for item in filter(None, (row.get("faces") or "").split(";")):
            x, y, gender = item.split(",")
            faces.append(Face(float(x), float(y), gender.strip().upper()))
        photos.append(Photo(path.parent / row["file"], int(row["min_faces"]), int(row["max_faces"]), tuple(faces)))
    return photos


def match(labels: tuple[Face, ...], boxes: list[dict[str, float]]) -> dict[int, int]:
    """Label index -> box index: a box serves the label whose point it contains, pairs
    taken nearest box centre first, each box and each label at most once."""
    pairs = []
    for li, face in enumerate(labels):
        for bi, box in enumerate(boxes):
            if box["x1"] <= face.x <= box["x2"] and box["y1"] <= face.y <= box["y2"]:
                centre = ((box["x1"] + box["x2"]) / 2, (box["y1"] + box["y2"]) / 2)
                pairs.append(((centre[0] - face.x) ** 2 + (centre[1] - face.y) ** 2, li, bi))
    matched: dict[int, int] = {}
    for _, li, bi in sorted(pairs):
        if li not in matched and bi not in matched.values():
            matched[li] = bi
    return matched


def score(photo: Photo, faces: list[dict[str, Any]]) -> Score:
    """How the merged faces (box, gender) of one photo compare with its labels."""
    matched = match(photo.faces, [f["box"] for f in faces])
    result = Score(labelled=len(photo.faces), found=len(matched), extra=max(0, len(faces) - photo.max_faces))
    for li, bi in matched.items():
        truth = photo.faces[li].gender
        if truth in ("M", "F"):
            answer = faces[bi]["gender"]
            result.scored += 1
            result.right += LETTER.get(answer) == truth
            result.unknown += answer not in LETTER
    return result


class Pipeline:
    """The service's detector and estimator for one configuration, run in this process."""

    def __init__(self, config: settings.Settings) -> None:
        self.config = config
        self.detector = router.build_face_detector(config)
        self.estimator = router.build_age_gender_estimator(config)
        self.detector.prepare()
        self.estimator.prepare()

    def detect(self, data: bytes) -> list[DetectedFace]:
        found = stages.landmarks_from_bytes(
            data, self.detector, self.config.max_image_pixels, self.config.detect_max_side, self.config.small_faces_max_side
        )["faces"]
        return [DetectedFace.from_dict(face) for face in found]

    def estimate(self, data: bytes, faces: list[DetectedFace]) -> list[dict[str, Any]]:
        return stages.per_face_from_bytes(data, self.detector, self.estimator, faces, self.config.max_image_pixels)["faces"]

    def faces(self, data: bytes) -> list[dict[str, Any]]:
        return self.estimate(data, self.detect(data))


SHIFTS = {"moved 1 px right": (1, 0), "moved 1 px left": (-1, 0), "moved 1 px down": (0, 1), "moved 1 px up": (0, -1)}


def jitter_rows(pipeline: Pipeline, inputs: list[tuple[Photo, bytes]]) -> list[str]:
    """Table rows: genders right with the boxes as detected, then with every box (and its
    points) moved one pixel each way, how many answers that changes, and how far it moves
    the ages (mean and largest change, in years)."""
    scores = {name: Score() for name in ["as detected", *SHIFTS]}
    changed, detected = dict.fromkeys(scores, 0), 0
    age_moves: dict[str, list[float]] = {name: [] for name in scores}
    for photo, data in inputs:
        found = pipeline.detect(data)
        detected += len(found)
        reference = pipeline.estimate(data, found)
        scores["as detected"].add(score(photo, reference))
        age_moves["as detected"].extend(0.0 for _ in reference)
        for name, (dx, dy) in SHIFTS.items():
            answers = pipeline.estimate(data, [face.shifted(dx, dy) for face in found])
            scores[name].add(score(photo, answers))
            changed[name] += sum(a["gender"] != b["gender"] for a, b in zip(reference, answers, strict=True))
            age_moves[name].extend(abs(a["age"] - b["age"]) for a, b in zip(reference, answers, strict=True))
    return [
        f"| {name} | {s.right}/{s.scored} ({percent(s.right, s.scored)}) | {changed[name]} of {detected} | "
        f"{statistics.fmean(age_moves[name] or [0.0]):.1f} ({max(age_moves[name], default=0.0):.1f}) |"
        for name, s in scores.items()
    ]


def enlarged(photo: Photo, width: int) -> tuple[Photo, bytes]:
    """The photo resized to ``width`` pixels (JPEG, quality 92), its labels moved along."""
    with Image.open(photo.path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        factor = width / image.width
        buffer = io.BytesIO()
        image.resize((width, round(image.height * factor)), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=92)
    faces = tuple(Face(f.x * factor, f.y * factor, f.gender) for f in photo.faces)
    return dataclasses.replace(photo, faces=faces), buffer.getvalue()


def mosaics(photos: list[Photo], side: int) -> list[tuple[Photo, bytes]]:
    """The photos tiled ``side`` x ``side`` at their own size into crowd-like pictures
    (JPEG, quality 92), labels moved along: the same faces, far smaller against the frame."""
    results = []
    per_mosaic = side * side
    for start in range(0, len(photos), per_mosaic):
        group = photos[start : start + per_mosaic]
        images = [ImageOps.exif_transpose(Image.open(photo.path)).convert("RGB") for photo in group]
        cell_w, cell_h = max(i.width for i in images), max(i.height for i in images)
        canvas = Image.new("RGB", (cell_w * side, cell_h * -(-len(group) // side)), (128, 128, 128))
        faces: list[Face] = []
        for index, (photo, image) in enumerate(zip(group, images, strict=True)):
            left, top = (index % side) * cell_w, (index // side) * cell_h
            canvas.paste(image, (left, top))
            faces.extend(Face(f.x + left, f.y + top, f.gender) for f in photo.faces)
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=92)
        name = group[0].path.with_name(f"mosaic{start // per_mosaic + 1}-{canvas.width}x{canvas.height}.jpg")
        mosaic = Photo(name, sum(p.min_faces for p in group), sum(p.max_faces for p in group), tuple(faces))
        results.append((mosaic, buffer.getvalue()))
    return results


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def totals_row(name: str, total: Score, seconds: list[float]) -> str:
    return (
        f"| {name} | {total.found}/{total.labelled} ({percent(total.found, total.labelled)}) | {total.extra} | "
        f"{total.right}/{total.scored} ({percent(total.right, total.scored)}) | {total.unknown} | "
        f"{total.scored - total.right - total.unknown} | {statistics.median(seconds) * 1e3:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/accuracy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", nargs="*", type=Path, help="labels files (default: ../shared/faces-dev and images/)")
    parser.add_argument("--only-default", action="store_true", help="run only the configured default")
    parser.add_argument("--width", type=int, default=0, help="resize every photo to this width first (default: as it is)")
    parser.add_argument(
        "--mosaic", type=int, default=0, metavar="N", help="tile the photos N x N into crowd-like pictures first (default: no)"
    )
    parser.add_argument(
        "--jitter", action="store_true", help="instead: genders and ages with every box moved one pixel each way (the configured default)"
    )
    parser.add_argument("--append", action="store_true", help="also append the tables to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line for the heading (what changed)")
    args = parser.parse_args(argv)
    label_files = args.labels or [path for path in DEFAULT_LABELS if path.exists()]
    photos = [photo for path in label_files for photo in read_labels(path)]
    if args.width and args.mosaic:
        parser.error("choose --width or --mosaic, not both")
    base = settings.load()
    if args.mosaic:
        inputs = mosaics(photos, args.mosaic)
    else:
        inputs = [enlarged(p, args.width) if args.width else (p, p.path.read_bytes()) for p in photos]

    header = [
        f"### {date.today().isoformat()}: accuracy{': ' + args.note if args.note else ''}",
        "",
        f"{len(photos)} photos from {', '.join(str(p.parent.name) + '/' + p.name for p in label_files)}"
        + (f", each resized to {args.width} px wide; " if args.width else "")
        + (f", tiled {args.mosaic} x {args.mosaic} at their own size; " if args.mosaic else "")
        + ("" if args.width or args.mosaic else "; ")
        + f"DETECT_MAX_SIDE={base.detect_max_side}, SMALL_FACES_MAX_SIDE={base.small_faces_max_side}, "
        f"DETECT_THRESHOLD={base.detect_threshold}, "
        f"AGEGENDER_FLIP={int(base.agegender_flip)}, MIN_GENDER_CONFIDENCE={base.min_gender_confidence}.",
        "",
    ]
    if args.jitter:
        lines = [
            *header,
            "| boxes | genders right | answers that differ from the boxes as detected | ages moved, years: mean (largest) |",
            "|---|---|---|---|",
            *jitter_rows(Pipeline(base), inputs),
            "",
        ]
    else:
        lines = [*header, *configuration_tables(base, inputs, args.only_default)]
    table = "\n".join(lines)
    print(table)
    if args.append:
        append_to_section("Accuracy (`bench/accuracy.py`)", table)
    return 0


def configuration_tables(base: settings.Settings, inputs: list[tuple[Photo, bytes]], only_default: bool) -> list[str]:
    """The totals of each configuration, then the default's photo by photo."""
    names = list(CONFIGURATIONS)[:1] if only_default else list(CONFIGURATIONS)
    per_photo: list[str] = []
    totals: list[str] = []
    for name in names:
        pipeline = Pipeline(dataclasses.replace(base, **CONFIGURATIONS[name]))
        total, seconds = Score(), []
        for photo, data in inputs:
            started = time.perf_counter()
            faces = pipeline.faces(data)
            seconds.append(time.perf_counter() - started)
            result = score(photo, faces)
            total.add(result)
            if name == names[0]:
                per_photo.append(
                    f"| {photo.path.name} | {result.found}/{result.labelled} | {len(faces)} ({photo.min_faces}-{photo.max_faces}) | "
                    f"{result.extra} | {result.right}/{result.scored} | {result.unknown} | "
                    + "".join(LETTER.get(f["gender"], "?") for f in sorted(faces, key=lambda f: f["box"]["x1"]))
                    + " |"
                )
        totals.append(totals_row(name, total, seconds))
    return [
        "| configuration | faces found | extra boxes | genders right | Unknown | wrong | ms per photo |",
        "|---|---|---|---|---|---|---|",
        *totals,
        "",
        f"Per photo, {names[0]}:",
        "",
        "| photo | found | boxes (labelled range) | extra | genders right | Unknown | answers left to right |",
        "|---|---|---|---|---|---|---|",
        *per_photo,
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
