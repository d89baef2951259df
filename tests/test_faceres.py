"""The opt-in FaceRes age/gender backend (tasks/backends/faceres.py): its crop, its
answers with the shipped weights, and the service running it (AGEGENDER_BACKEND=faceres)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tasks.backends import router
from tasks.backends.base import Box, DetectedFace
from tasks.backends.centerface import CenterFace
from tasks.backends.faceres import FaceResAgeGender, face_crop
from tasks.shared import settings
from tasks.shared.imaging import decode_image
from tests.conftest import private_stack, process_once

T1_LEFT_TO_RIGHT = ["Female", "Female", "Male", "Male", "Male", "Female"]


@pytest.fixture(scope="module")
def faceres() -> FaceResAgeGender:
    model = FaceResAgeGender(threads=2)
    model.prepare()
    return model


def square_face(x1: float, y1: float, side: float) -> DetectedFace:
    return DetectedFace(Box(x1, y1, x1 + side, y1 + side, 0.9), ())


def test_the_crop_is_the_box_enlarged_and_centred() -> None:
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    image[150:250, 150:250] = (255, 0, 0)  # a red 100 px "face"
    crop = face_crop(image, square_face(150, 150, 100))
    assert crop.shape == (224, 224, 3)
    # 140 px around the face: the red square fills the middle 224/1.4 = 160 pixels (32-192).
    assert (crop[112, 36:188] == (255, 0, 0)).all() and (crop[36:188, 112] == (255, 0, 0)).all()
    assert (crop[112, :28] == 0).all() and (crop[112, 196:] == 0).all() and (crop[:28, 112] == 0).all()


def test_the_crop_is_black_beyond_the_picture() -> None:
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = face_crop(image, square_face(0, 0, 50))  # 70 px square centred on (25, 25)
    assert (crop[0, 0] == 0).all() and (crop[-1, -1] == 200).all()


def test_t1_all_six_genders_right(faceres: FaceResAgeGender, t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes, 10**8)
    detector = CenterFace(threads=2, max_side=640)
    detector.prepare()
    faces = sorted(detector.detect(image), key=lambda f: f.box.x1)
    answers = faceres.estimate(image, faces)
    assert [a.gender for a in answers] == T1_LEFT_TO_RIGHT
    for answer in answers:
        assert 0.5 <= answer.gender_confidence <= 1 and 0 < answer.age_confidence <= 1
        assert 10 <= answer.age <= 70


def test_no_face_no_answer_and_prepare_comes_first(faceres: FaceResAgeGender) -> None:
    assert faceres.estimate(np.zeros((64, 64, 3), dtype=np.uint8), []) == []
    with pytest.raises(RuntimeError, match="prepare"):
        FaceResAgeGender().estimate(np.zeros((64, 64, 3), dtype=np.uint8), [square_face(8, 8, 40)])


def test_a_missing_network_is_named_at_prepare(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="convert_faceres.py"):
        FaceResAgeGender(tmp_path / "faceres.onnx").prepare()


def test_the_setting_picks_it() -> None:
    config = dataclasses.replace(settings.load(), agegender_backend="faceres", agegender_flip=False, min_gender_confidence=0)
    assert isinstance(router.build_age_gender_estimator(config), FaceResAgeGender)


def test_the_service_answers_with_it(tmp_path: Path, t1_bytes: bytes) -> None:
    with private_stack(tmp_path, AGEGENDER_BACKEND="faceres") as stack:
        response, document = process_once(stack, t1_bytes)
    assert response.status == "Success"
    faces = sorted(response.faces, key=lambda f: f.box.x1)
    assert [face.gender for face in faces] == T1_LEFT_TO_RIGHT
    assert json.dumps(document).count('"backend": "faceres"') == 1
