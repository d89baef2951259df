"""The stage functions that the Celery tasks wrap, called directly (no broker)."""

from __future__ import annotations

import json

import pytest

from tasks import models, stages
from tasks.backends.base import Box, DetectedFace
from tasks.shared.imaging import decode_image


def test_landmark_stage_result_is_json_ready(t1_bytes: bytes) -> None:
    result = stages.landmark_result(decode_image(t1_bytes, 10**8), models.face_detector())
    assert result["status"] == "Success" and result["error"] == ""
    assert result["runtime"] > 0
    assert result["point_scheme"].startswith("5-point")
    assert len(result["faces"]) == 6
    assert json.loads(json.dumps(result)) == result
    assert set(result["faces"][0]) == {"box", "points"}


def test_agegender_stage_result_is_json_ready(astronaut_bytes: bytes) -> None:
    result = stages.per_face_result(
        decode_image(astronaut_bytes, 10**8), models.face_detector(), models.estimator("agegender")
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
    result = stages.per_face_result(image, models.face_detector(), models.estimator("agegender"), faces)
    assert result["detection"] == "landmark stage"
    assert [f["box"] for f in result["faces"]] == [face.to_dict()["box"] for face in faces]


def test_landmark_stage_scales_a_reduced_decode_back(t1_bytes: bytes) -> None:
    from tasks.shared.imaging import decode_reduced

    full = stages.landmark_result(decode_image(t1_bytes, 10**8), models.face_detector())
    reduced_image, scale = decode_reduced(t1_bytes, 10**8, 640)
    reduced = stages.landmark_result(reduced_image, models.face_detector(), scale)
    assert scale == 2.0 and len(reduced["faces"]) == len(full["faces"]) == 6
    for a, b in zip(full["faces"], reduced["faces"]):
        assert abs(a["box"]["x1"] - b["box"]["x1"]) < 6 and abs(a["box"]["y2"] - b["box"]["y2"]) < 6


def square(side: float) -> DetectedFace:
    return DetectedFace(Box(10, 10, 10 + side, 10 + side, 0.9), ())


def test_decode_side_halves_while_the_smallest_face_keeps_the_networks_input_size() -> None:
    assert stages.decode_side([square(100)], 1920, 64) == 0  # half would leave 50 px: full size
    assert stages.decode_side([square(130)], 1920, 64) == 960
    assert stages.decode_side([square(600), square(300)], 1920, 64) == 480  # the smallest decides
    assert stages.decode_side([square(5000)], 1920, 64) == 240  # an eighth at most
    assert stages.decode_side([], 1921, 64) == 241  # no face: the cheapest decode


def test_a_reduced_decode_gives_the_full_decodes_answers_in_full_size_coordinates(astronaut_bytes: bytes) -> None:
    from bench.speed import resized
    from tests.conftest import ASTRONAUT_JPG

    data = resized(ASTRONAUT_JPG, 1920)
    detector, estimator = models.face_detector(), models.estimator("agegender")
    faces = [DetectedFace.from_dict(f) for f in stages.landmarks_from_bytes(data, detector, 10**8, 640)["faces"]]
    assert stages.decode_side(faces, 1920, estimator.face_side) > 0  # this face is large: decoded smaller
    reduced = stages.per_face_from_bytes(data, detector, estimator, faces, 10**8)["faces"]
    full = stages.per_face_result(decode_image(data, 10**8), detector, estimator, faces)["faces"]
    assert [f["box"] for f in reduced] == [f["box"] for f in full] == [face.to_dict()["box"] for face in faces]
    assert [f["gender"] for f in reduced] == [f["gender"] for f in full] == ["Female"]
    assert reduced[0]["age"] == pytest.approx(full[0]["age"], abs=3)
