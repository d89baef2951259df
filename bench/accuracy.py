"""Accuracy of the backends on a labelled set of images.

    .venv/bin/python bench/accuracy.py images bench/labels.tsv [--append]

The labels file is tab-separated with a header: ``file``, ``min_faces``, ``max_faces``,
``primary_gender`` (``F``, ``M`` or ``mixed``), optional ``age`` (of the largest face)
and optional ``genders_left_to_right`` (``F,M,...`` for every face, ordered by the left
edge of its box). Prints one markdown row per backend: images whose face count is in
range, gender of the largest face, every labelled face's gender (right / Unknown /
wrong), the mean absolute age error where ages are labelled, and milliseconds per image.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import append_to_section  # noqa: E402
from tasks import settings  # noqa: E402
from tasks.backends import router  # noqa: E402
from tasks.backends.base import AgeGenderEstimator, FaceDetector  # noqa: E402
from tasks.backends.cydral import CydralAgeGender  # noqa: E402
from tasks.backends.views import Abstaining, Mirrored  # noqa: E402
from tasks.imaging import decode_image  # noqa: E402

LETTER = {"Male": "M", "Female": "F", "Unknown": "?"}


def backends(config: settings.Settings) -> dict[str, tuple[FaceDetector, AgeGenderEstimator] | str]:
    """Name -> (detector, estimator), or a reason it cannot run here."""
    detector = router.face_detector(dataclasses.replace(config, landmark_backend="embedded"))
    found: dict[str, tuple[FaceDetector, AgeGenderEstimator] | str] = {
        "embedded as a new user gets it (no flip, no threshold)": (detector, CydralAgeGender()),
        "embedded + flip averaging": (detector, Mirrored(CydralAgeGender())),
        "embedded + flip + Unknown below 0.75 (default)": (detector, Abstaining(Mirrored(CydralAgeGender()), 0.75)),
    }
    if "insightface" in router.DETECTORS:  # with the default flip and threshold
        insight = dataclasses.replace(config, landmark_backend="insightface", agegender_backend="insightface",
                                      agegender_flip=True, min_gender_confidence=0.75)
        try:
            pair = (router.face_detector(insight), router.age_gender_estimator(insight))
            for model in pair:
                model.prepare()
            found[f"insightface {config.insightface_pack}"] = pair
        except Exception as error:  # the pack is the user's to download
            found[f"insightface {config.insightface_pack}"] = f"not run: {str(error).split('. ')[0]}"
    return found


def evaluate(detector: FaceDetector, estimator: AgeGenderEstimator, images: Path, labels: list[dict]) -> dict[str, str]:
    detector.prepare()
    estimator.prepare()
    in_range = primary_right = primary_scored = right = unknown = wrong = 0
    age_errors, times = [], []
    for row in labels:
        image = decode_image((images / row["file"]).read_bytes(), 10**9)
        started = time.perf_counter()
        faces = sorted(detector.detect(image), key=lambda face: face.box.x1)
        estimates = estimator.estimate(image, faces)
        times.append(time.perf_counter() - started)
        in_range += int(row["min_faces"]) <= len(faces) <= int(row["max_faces"])
        largest = max(range(len(faces)), key=lambda i: faces[i].box.area, default=None)
        if row["primary_gender"] in ("F", "M") and largest is not None:
            primary_scored += 1
            primary_right += LETTER[estimates[largest].gender] == row["primary_gender"]
        if row.get("age") and largest is not None:
            age_errors.append(abs(estimates[largest].age - float(row["age"])))
        truth = [g for g in (row.get("genders_left_to_right") or "").split(",") if g]
        if truth and len(truth) == len(faces):
            for estimate, expected in zip(estimates, truth):
                got = LETTER[estimate.gender]
                right += got == expected
                unknown += got == "?"
                wrong += got not in (expected, "?")
        elif truth:
            wrong += len(truth)  # faces missed or extra: none of them can be scored as right
    return {
        "face count in range": f"{in_range}/{len(labels)}",
        "largest face gender": f"{primary_right}/{primary_scored}",
        "face genders right / Unknown / wrong": f"{right} / {unknown} / {wrong}",
        "age MAE (years)": f"{statistics.mean(age_errors):.1f}" if age_errors else "no ages labelled",
        "ms per image": f"{statistics.median(times) * 1e3:.0f}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/accuracy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="folder with the labelled images")
    parser.add_argument("labels", type=Path, help="labels file (TSV, see above)")
    parser.add_argument("--append", action="store_true", help="also append the table to docs/benchmarks.md")
    args = parser.parse_args(argv)
    with open(args.labels, newline="") as handle:
        labels = list(csv.DictReader(handle, delimiter="\t"))
    columns = ["face count in range", "largest face gender", "face genders right / Unknown / wrong", "age MAE (years)", "ms per image"]
    lines = [
        f"### {date.today().isoformat()}: accuracy on {args.labels.name} ({len(labels)} images)",
        "",
        "| backend | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, pair in backends(settings.load()).items():
        if isinstance(pair, str):
            lines.append(f"| {name} | {pair} |" + " |" * (len(columns) - 1))
            continue
        result = evaluate(*pair, args.images, labels)
        lines.append(f"| {name} | " + " | ".join(result[c] for c in columns) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.append:
        append_to_section("Accuracy (`bench/accuracy.py`)", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
