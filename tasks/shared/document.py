"""Merging the stages' results into the output document.

The document keeps the original shape (``redis_key``, ``image_path``, ``results`` with
``landmark_service`` and ``agegender_service``) so existing consumers keep working, and
adds ``faces`` (every stage's values matched per face), ``stages`` (each stage's full
result, status and runtime) and an overall ``status``.
"""

from __future__ import annotations

from typing import Any

from tasks.shared.faces import Box

SUCCESS = "Success"
FAILURE = "Failure"
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


# The age/gender stage's values are on every face of the output, None where it has none.
AGEGENDER_FIELDS = ("age", "age_confidence", "gender", "gender_confidence")


def merged_faces(landmark: dict[str, Any], per_face: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per face: its box, landmark points and every per-face stage's values.

    ``found_by`` is "both" when the landmark stage and every per-face stage have the face,
    "landmark" when some per-face stage has not, or the name of the stage that found it
    with its own detection.
    """
    faces = [{"box": f["box"], "landmarks": f["points"], "_stages": set(), "_own": ""} for f in landmark.get("faces", [])]
    for name, result in per_face.items():
        stage_faces = result.get("faces", [])
        for index, matched in match_faces(faces, stage_faces):
            if matched is None:
                continue
            if index is None:
                faces.append({"box": stage_faces[matched]["box"], "landmarks": [], "_stages": set(), "_own": name})
                index = len(faces) - 1
            faces[index].update({k: v for k, v in stage_faces[matched].items() if k != "box"})
            faces[index]["_stages"].add(name)
    for face in faces:
        stages, own = face.pop("_stages"), face.pop("_own")
        for field in AGEGENDER_FIELDS if "agegender" in per_face else ():
            face.setdefault(field, None)
        face["found_by"] = own or ("both" if stages == set(per_face) else "landmark")
    return faces


def _missing(stage: str) -> dict[str, Any]:
    return {"status": MISSING, "error": f"no {stage} result in Redis", "runtime": 0.0, "faces": []}


def build_document(
    key: str,
    image_path: str,
    landmark: dict[str, Any] | None,
    per_face: dict[str, dict[str, Any] | None],
) -> dict[str, Any]:
    """The JSON written to ``output/<key>.json``: ``per_face`` maps each per-face stage to
    its result; a missing result is recorded as such."""
    landmark = landmark or _missing("landmark")
    results = {name: result or _missing(name) for name, result in per_face.items()}
    ok = all(stage["status"] == SUCCESS for stage in (landmark, *results.values()))
    agegender = results.get("agegender", _missing("agegender"))
    return {
        "redis_key": key,
        "image_path": image_path,
        "status": SUCCESS if ok else FAILURE,
        "results": {  # the original design's shape
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
        "faces": merged_faces(landmark, results),
        "stages": {"landmark": landmark, **results},
    }
