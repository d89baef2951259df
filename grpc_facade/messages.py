"""Result documents (plain dicts, as stored in Redis and ``output/``) to protobuf messages."""

from __future__ import annotations

from typing import Any

from proto import image_processing_pb2 as pb
from tasks.shared.document import AGEGENDER_FIELDS


def box(data: dict[str, float]) -> pb.Box:
    return pb.Box(x1=data["x1"], y1=data["y1"], x2=data["x2"], y2=data["y2"], score=data["score"])


def points(data: list[list[float]]) -> list[pb.Point]:
    return [pb.Point(x=x, y=y) for x, y in data]


def landmark_response(key: str, result: dict[str, Any]) -> pb.LandmarkResponse:
    return pb.LandmarkResponse(
        status=result["status"],
        redis_key=key,
        runtime=result["runtime"],
        error=result.get("error", ""),
        point_scheme=result.get("point_scheme", ""),
        faces=[pb.FaceLandmarks(box=box(f["box"]), points=points(f["points"])) for f in result["faces"]],
    )


def age_gender_response(key: str, result: dict[str, Any]) -> pb.AgeGenderResponse:
    return pb.AgeGenderResponse(
        status=result["status"],
        redis_key=key,
        runtime=result["runtime"],
        error=result.get("error", ""),
        faces=[
            pb.FaceAgeGender(
                box=box(f["box"]),
                age=f["age"],
                age_confidence=f["age_confidence"],
                gender=f["gender"],
                gender_confidence=f["gender_confidence"],
            )
            for f in result["faces"]
        ],
    )


def storage_response(key: str, storage: dict[str, Any]) -> pb.StorageResponse:
    return pb.StorageResponse(
        status=storage["status"],
        redis_key=key,
        runtime=storage["runtime"],
        error=storage.get("error", ""),
        json_path=storage.get("json_path", ""),
        image_path=storage.get("image_path", ""),
        annotated_path=storage.get("annotated_path", ""),
    )


_FACE_FIELDS = {"box", "landmarks", "found_by", *AGEGENDER_FIELDS}


def face(data: dict[str, Any]) -> pb.Face:
    """A merged face; what further per-face stages say goes to ``values`` and ``labels``."""
    message = pb.Face(box=box(data["box"]), landmarks=points(data["landmarks"]), found_by=data["found_by"])
    if data.get("gender") is not None:
        message.age = data["age"]
        message.age_confidence = data["age_confidence"]
        message.gender = data["gender"]
        message.gender_confidence = data["gender_confidence"]
    for name, value in data.items():
        if name in _FACE_FIELDS:
            continue
        if isinstance(value, str):
            message.labels[name] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            message.values[name] = value
    return message


def combined_response(outcome: dict[str, Any], runtime: float, cached: bool = False) -> pb.CombinedResponse:
    """``outcome`` is what the storage task returns: ``{"document", "storage"}``."""
    document, storage = outcome["document"], outcome["storage"]
    key = document["redis_key"]
    ok = document["status"] == "Success" and storage["status"] == "Success"
    return pb.CombinedResponse(
        status="Success" if ok else "Failure",
        redis_key=key,
        landmark_response=landmark_response(key, document["stages"]["landmark"]),
        age_gender_response=age_gender_response(key, document["stages"]["agegender"]),
        storage_response=storage_response(key, storage),
        faces=[face(f) for f in document["faces"]],
        runtime=runtime,
        cached=cached,
        other_stages={
            name: pb.StageStatus(status=result["status"], runtime=result["runtime"], error=result.get("error", ""))
            for name, result in document["stages"].items()
            if name not in ("landmark", "agegender")
        },
    )
