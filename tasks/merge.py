"""Merging the two stages' results into the output document.

The document keeps the original shape (``redis_key``, ``image_path``, ``results`` with
``landmark_service`` and ``agegender_service``) so existing consumers keep working, and
adds ``faces`` (both stages matched per face), ``stages`` (each stage's full result,
status and runtime) and an overall ``status``.
"""

from __future__ import annotations

from typing import Any

from tasks.backends.base import Box
from tasks.stages import FAILURE, SUCCESS

MISSING = "Missing"
MIN_MATCH_IOU = 0.3


def _box(face: dict[str, Any]) -> Box:
    return Box(**face["box"])


def match_faces(
    landmark_faces: list[dict[str, Any]], agegender_faces: list[dict[str, Any]]
) -> list[tuple[int | None, int | None]]:
    """Pair faces of the two stages by box overlap, greedily from the best overlap.

    Returns ``(landmark_index, agegender_index)`` pairs; a face found by only one stage
    is paired with ``None`` so that it is recorded, never dropped. Pairs come in
    landmark order, then the unmatched age/gender faces.
    """
    overlaps = sorted(
        (
            (_box(lf).iou(_box(af)), li, ai)
            for li, lf in enumerate(landmark_faces)
            for ai, af in enumerate(agegender_faces)
        ),
        reverse=True,
    )
    partner: dict[int, int] = {}
    taken: set[int] = set()
    for iou, li, ai in overlaps:
        if iou < MIN_MATCH_IOU:
            break
        if li not in partner and ai not in taken:
            partner[li] = ai
            taken.add(ai)
    pairs: list[tuple[int | None, int | None]] = [
        (li, partner.get(li)) for li in range(len(landmark_faces))
    ]
    pairs += [(None, ai) for ai in range(len(agegender_faces)) if ai not in taken]
    return pairs


def merged_faces(landmark: dict[str, Any], agegender: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per face with box, landmark points, age, gender and confidences."""
    lfaces, afaces = landmark.get("faces", []), agegender.get("faces", [])
    faces = []
    for li, ai in match_faces(lfaces, afaces):
        lf = lfaces[li] if li is not None else None
        af = afaces[ai] if ai is not None else None
        faces.append(
            {
                "box": (lf or af)["box"],  # type: ignore[index]
                "landmarks": lf["points"] if lf else [],
                "age": af["age"] if af else None,
                "age_confidence": af["age_confidence"] if af else None,
                "gender": af["gender"] if af else None,
                "gender_confidence": af["gender_confidence"] if af else None,
                "found_by": "both" if lf and af else ("landmark" if lf else "agegender"),
            }
        )
    return faces


def build_document(
    key: str,
    image_path: str,
    landmark: dict[str, Any] | None,
    agegender: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON written to ``output/<key>.json``; a missing stage result is recorded as such."""
    landmark = landmark or {"status": MISSING, "error": "no landmark result in Redis", "runtime": 0.0, "faces": []}
    agegender = agegender or {"status": MISSING, "error": "no age/gender result in Redis", "runtime": 0.0, "faces": []}
    ok = landmark["status"] == SUCCESS and agegender["status"] == SUCCESS
    return {
        "redis_key": key,
        "image_path": image_path,
        "status": SUCCESS if ok else FAILURE,
        "results": {
            "landmark_service": {
                "landmarks": [
                    [f["box"]["x1"], f["box"]["y1"], f["box"]["x2"], f["box"]["y2"]] for f in landmark["faces"]
                ],
                "points": [f["points"] for f in landmark["faces"]],
                "point_scheme": landmark.get("point_scheme", ""),
            },
            "agegender_service": {
                "age": [f["age"] for f in agegender["faces"]],
                "gender": [f["gender"] for f in agegender["faces"]],
            },
        },
        "faces": merged_faces(landmark, agegender),
        "stages": {"landmark": landmark, "agegender": agegender},
    }
