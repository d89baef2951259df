"""The stage functions that the Celery tasks wrap, called directly (no broker)."""

from __future__ import annotations

import json

from tasks import models, stages
from tasks.imaging import decode_image


def test_landmark_stage_result_is_json_ready(t1_bytes: bytes) -> None:
    result = stages.detect_landmarks(decode_image(t1_bytes, 10**8), models.face_detector())
    assert result["status"] == "Success" and result["error"] == ""
    assert result["runtime"] > 0
    assert result["point_scheme"].startswith("5-point")
    assert len(result["faces"]) == 6
    assert json.loads(json.dumps(result)) == result
    assert set(result["faces"][0]) == {"box", "points"}


def test_agegender_stage_result_is_json_ready(astronaut_bytes: bytes) -> None:
    result = stages.estimate_age_gender(
        decode_image(astronaut_bytes, 10**8), models.face_detector(), models.age_gender_estimator()
    )
    assert result["status"] == "Success"
    assert json.loads(json.dumps(result)) == result
    (face,) = result["faces"]
    assert face["gender"] == "Female" and 1 <= face["age"] <= 100
    assert set(face) == {"box", "age", "age_confidence", "gender", "gender_confidence"}


def test_failed_stage_has_the_same_shape() -> None:
    result = stages.failed("boom")
    assert result["status"] == "Failure" and result["error"] == "boom" and result["faces"] == []


def test_agegender_stage_uses_shared_faces_when_given(t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes, 10**8)
    faces = models.face_detector().detect(image)[:2]
    result = stages.estimate_age_gender(image, models.face_detector(), models.age_gender_estimator(), faces)
    assert result["detection"] == "landmark stage"
    assert [f["box"] for f in result["faces"]] == [face.to_dict()["box"] for face in faces]


def test_landmark_stage_scales_a_reduced_decode_back(t1_bytes: bytes) -> None:
    from tasks.imaging import decode_reduced

    full = stages.detect_landmarks(decode_image(t1_bytes, 10**8), models.face_detector())
    reduced_image, scale = decode_reduced(t1_bytes, 10**8, 640)
    reduced = stages.detect_landmarks(reduced_image, models.face_detector(), scale)
    assert scale == 2.0 and len(reduced["faces"]) == len(full["faces"]) == 6
    for a, b in zip(full["faces"], reduced["faces"]):
        assert abs(a["box"]["x1"] - b["box"]["x1"]) < 6 and abs(a["box"]["y2"] - b["box"]["y2"]) < 6
