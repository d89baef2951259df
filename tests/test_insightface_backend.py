"""The insightface backend, run for real on a tiny model pack generated here.

No real pack can be downloaded, so the fixture writes one in insightface's layout
(``<home>/models/<pack>/*.onnx``) with three small ONNX graphs whose inputs and outputs
have exactly the signatures insightface 2.1's model router expects:

* an SCRFD detector with 9 outputs (scores, boxes, 5 keypoints for strides 8/16/32,
  two anchors per place). Its stride-32 score is the mean *red* level of a 96x96 window
  centred on each anchor, so a red 96x96 square centred on an anchor gives exactly one
  face there, with a known box and known keypoints;
* a genderage network (96x96 input, 3 outputs): gender scores +-K*(mean red - mean blue),
  age 0.30, so a red face is a man and a blue face a woman;
* a 2d106det landmark network (192x192 input, 212 outputs): 106 points on a circle.

Every test runs with the network switched off (``socket`` refuses), so a path that
tried to download a pack would fail loudly.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.shared import settings
from tasks.backends import router
from tasks.backends.base import Box, DetectedFace
from tasks.backends.insightface_pack import (
    FIVE_POINT_SCHEME,
    HUNDRED_SIX_POINT_SCHEME,
    InsightFaceAgeGender,
    InsightFaceDetector,
    ModelPackMissing,
)
from tasks.stages import landmark_result

PACK = "tinypack"
SIDE = 320  # detector input side used by the tests (DETECT_MAX_SIDE)
SQUARE = (112, 208)  # the face square spans these rows and columns at scale 1
CENTRE = 160.0  # = 5 * 32: a stride-32 anchor
# Keypoint offsets from the anchor, in pixels: eyes, nose, mouth corners.
KEYPOINT_OFFSETS = [(-16.0, -14.0), (16.0, -14.0), (0.0, 4.0), (-12.0, 20.0), (12.0, 20.0)]
GENDER_GAIN = 5.0
AGE_OUTPUT = 0.30
RING = 0.5  # 2d106det points at this radius in its normalised output units
RED, BLUE = (255, 0, 0), (0, 0, 255)


# --- the generated model pack ------------------------------------------------------


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def _const(name: str, values) -> onnx.TensorProto:
    array = np.asarray(values)
    return numpy_helper.from_array(array.astype(np.int64 if array.dtype.kind == "i" else np.float32), name)


def scrfd_graph() -> onnx.ModelProto:
    """An SCRFD-shaped detector: outputs score_8/16/32, bbox_8/16/32, kps_8/16/32."""
    nodes, inits, outputs = [], [_const("flat", [-1, 1]), _const("zero", [[0.0]])], {}
    window = 96
    for stride in (8, 16, 32):
        if stride == 32:
            # logit = 20 * (mean of channel 0, i.e. red, over a 96x96 window centred on
            # the anchor) - 16: about +3.9 on a red square, below -9 one cell away.
            weight = np.zeros((1, 3, window, window), dtype=np.float32)
            weight[0, 0] = 20.0 / (window * window)
            bias, kernel, pads = [-16.0], window, [48, 48, 16, 16]
        else:  # the finer strides never fire
            weight = np.zeros((1, 3, stride, stride), dtype=np.float32)
            bias, kernel, pads = [-20.0], stride, [0, 0, 0, 0]
        inits += [_const(f"w{stride}", weight), _const(f"b{stride}", bias)]
        nodes += [
            helper.make_node(
                "Conv", ["input.1", f"w{stride}", f"b{stride}"], [f"logit{stride}"],
                kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads,
            ),
            helper.make_node("Sigmoid", [f"logit{stride}"], [f"p{stride}"]),
            helper.make_node("Reshape", [f"p{stride}", "flat"], [f"col{stride}"]),
            # Two anchors per place, listed one after the other, as SCRFD does.
            helper.make_node("Concat", [f"col{stride}", f"col{stride}"], [f"pair{stride}"], axis=1),
            helper.make_node("Reshape", [f"pair{stride}", "flat"], [f"score_{stride}"]),
            helper.make_node("Mul", [f"score_{stride}", "zero"], [f"nil{stride}"]),
        ]
        # Box sides and keypoints are predicted in units of the stride.
        inits += [
            _const(f"box{stride}", [[48.0 / stride] * 4]),
            _const(f"pts{stride}", [[v / stride for point in KEYPOINT_OFFSETS for v in point]]),
        ]
        nodes += [
            helper.make_node("Add", [f"nil{stride}", f"box{stride}"], [f"bbox_{stride}"]),
            helper.make_node("Add", [f"nil{stride}", f"pts{stride}"], [f"kps_{stride}"]),
        ]
        for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            outputs[f"{kind}_{stride}"] = helper.make_tensor_value_info(
                f"{kind}_{stride}", TensorProto.FLOAT, [f"n{stride}", width]
            )
    ordered = [outputs[f"{kind}_{s}"] for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])
    return _model(nodes, [image], ordered, inits)


def genderage_graph() -> onnx.ModelProto:
    """96x96 in, [female score, male score, age / 100] out."""
    k = GENDER_GAIN
    weight = [[-k, k, 0.0], [0.0, 0.0, 0.0], [k, -k, 0.0]]  # rows: red, green, blue means
    nodes = [
        helper.make_node("ReduceMean", ["data"], ["means"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["means", "weight", "bias"], ["fc1"]),
    ]
    inits = [_const("weight", weight), _const("bias", [0.0, 0.0, AGE_OUTPUT])]
    image = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["batch", 3, 96, 96])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["batch", 3])
    return _model(nodes, [image], [out], inits)


def landmark106_graph() -> onnx.ModelProto:
    """192x192 in, 106 (x, y) points on a circle of radius RING out."""
    angles = 2 * np.pi * np.arange(106) / 106
    ring = np.stack([RING * np.cos(angles), RING * np.sin(angles)], axis=1).reshape(1, 212)
    nodes = [
        helper.make_node("ReduceMean", ["data"], ["level"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["level", "zero"], ["nil"]),
        helper.make_node("Add", ["nil", "ring"], ["fc1"]),
    ]
    inits = [_const("zero", [[0.0]]), _const("ring", ring)]
    image = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])
    return _model(nodes, [image], [out], inits)


def write_pack(home: Path, name: str, files: dict[str, onnx.ModelProto]) -> Path:
    directory = home / "models" / name
    directory.mkdir(parents=True)
    for filename, model in files.items():
        onnx.save(model, str(directory / filename))
    return directory


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An INSIGHTFACE_HOME with the full tiny pack, named like buffalo_l's files."""
    root = tmp_path_factory.mktemp("insightface_home")
    write_pack(
        root,
        PACK,
        {"det_tiny.onnx": scrfd_graph(), "genderage.onnx": genderage_graph(), "2d106det.onnx": landmark106_graph()},
    )
    return root


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Refuse (and record) every name lookup and connection attempt."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during an insightface backend test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture(scope="module")
def detector(home: Path) -> InsightFaceDetector:
    model = InsightFaceDetector(home, PACK, max_side=SIDE)
    model.prepare()
    return model


@pytest.fixture(scope="module")
def estimator(home: Path) -> InsightFaceAgeGender:
    model = InsightFaceAgeGender(home, PACK)
    model.prepare()
    return model


def picture(height: int, width: int, squares: list[tuple[int, int, int, tuple[int, int, int]]]) -> np.ndarray:
    """A black RGB image with (top, left, side, colour) squares."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for top, left, side, colour in squares:
        image[top : top + side, left : left + side] = colour
    return image


def config(home: Path, **changes) -> settings.Settings:
    values = {
        "landmark_backend": "insightface",
        "agegender_backend": "insightface",
        "insightface_home": home,
        "insightface_pack": PACK,
        "landmark_points": 5,
        "detect_max_side": SIDE,
        "detect_threshold": 0.5,
        "ort_threads": 1,
    }
    values.update(changes)
    return dataclasses.replace(settings.load(), **values)


# --- detection ---------------------------------------------------------------------


def test_detector_finds_the_red_square_with_its_box_and_5_points(detector: InsightFaceDetector) -> None:
    # Taller than wide: SCRFD pads the image into its square input, at scale 1.
    image = picture(320, 256, [(SQUARE[0], SQUARE[0], 96, RED)])
    faces = detector.detect(image)
    assert len(faces) == 1  # the two anchors of the one firing place were merged
    face = faces[0]
    assert (face.box.x1, face.box.y1, face.box.x2, face.box.y2) == pytest.approx((112, 112, 208, 208), abs=0.01)
    assert 0.95 < face.box.score < 1.0
    expected = [(CENTRE + dx, CENTRE + dy) for dx, dy in KEYPOINT_OFFSETS]
    assert len(face.points) == 5
    for point, want in zip(face.points, expected, strict=True):
        assert point == pytest.approx(want, abs=0.01)
    assert detector.name == f"insightface-{PACK}"
    assert detector.point_scheme == FIVE_POINT_SCHEME


def test_detector_returns_coordinates_of_the_given_image_size(detector: InsightFaceDetector) -> None:
    # Twice as large: SCRFD shrinks it by 2, the adapter must give full-size pixels.
    image = picture(640, 512, [(224, 224, 192, RED)])
    faces = detector.detect(image)
    assert len(faces) == 1
    box = faces[0].box
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((224, 224, 416, 416), abs=0.05)
    assert faces[0].points[2] == pytest.approx((320.0, 328.0), abs=0.05)  # nose: centre + 2 * 4


def test_detector_clips_boxes_to_the_image(detector: InsightFaceDetector) -> None:
    # The square is cut by the right edge; SCRFD's box (from the padded network input)
    # reaches 8 px past it.
    faces = detector.detect(picture(320, 200, [(112, 112, 96, RED)]))
    assert len(faces) == 1
    box = faces[0].box
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((112, 112, 200, 208), abs=0.01)
    assert 0.5 < box.score < 0.95  # part of its window is black


def test_detector_converts_rgb_to_the_bgr_insightface_expects(detector: InsightFaceDetector) -> None:
    # The tiny detector only sees red; fed without the RGB->BGR swap it would see the
    # blue square instead of the red one.
    assert detector.detect(picture(320, 320, [(112, 112, 96, BLUE)])) == []
    assert len(detector.detect(picture(320, 320, [(112, 112, 96, RED)]))) == 1


def test_detector_finds_nothing_in_black_or_degenerate_images(detector: InsightFaceDetector) -> None:
    assert detector.detect(np.zeros((240, 320, 3), dtype=np.uint8)) == []
    for shape in [(1, 1, 3), (7, 500, 3), (900, 3, 3), (1, 2000, 3)]:
        assert detector.detect(np.zeros(shape, dtype=np.uint8)) == []


def test_detector_applies_the_configured_threshold(home: Path) -> None:
    strict = router.build_face_detector(config(home, detect_threshold=0.99))
    strict.prepare()
    assert strict.detect(picture(320, 320, [(112, 112, 96, RED)])) == []  # its score is ~0.98


def test_detector_gives_106_points_when_configured(home: Path) -> None:
    model = router.build_face_detector(config(home, landmark_points=106))
    assert model.point_scheme == HUNDRED_SIX_POINT_SCHEME
    model.prepare()
    faces = model.detect(picture(320, 320, [(112, 112, 96, RED)]))
    assert len(faces) == 1
    points = np.array(faces[0].points)
    assert points.shape == (106, 2)
    # insightface crops 1.5 x the box side into 192 px; RING (in units of 96 crop px)
    # therefore maps back to RING * 96 * 96 * 1.5 / 192 image pixels around the centre.
    radius = RING * 96 * 96 * 1.5 / 192
    distances = np.hypot(points[:, 0] - CENTRE, points[:, 1] - CENTRE)
    assert distances == pytest.approx(np.full(106, radius), abs=0.05)
    assert np.ptp(points[:, 0]) > radius  # spread around the circle, not one point


def test_landmark_stage_reports_the_backend_and_its_point_scheme(detector: InsightFaceDetector) -> None:
    result = landmark_result(picture(320, 320, [(112, 112, 96, RED)]), detector, scale=2.0)
    assert result["backend"] == f"insightface-{PACK}"
    assert result["point_scheme"] == FIVE_POINT_SCHEME
    assert len(result["faces"]) == 1
    assert result["faces"][0]["box"]["x2"] == pytest.approx(416, abs=0.05)


# --- age and gender ----------------------------------------------------------------


def expected_male_probability(image: np.ndarray, box: Box) -> float:
    """The tiny network's answer, worked out independently of the adapter: insightface
    crops a square of 1.5 x the box's longer side around its centre into 96x96."""
    longer = max(box.x2 - box.x1, box.y2 - box.y1)
    scale = 96 / (longer * 1.5)
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    matrix = np.array([[scale, 0, 48 - cx * scale], [0, scale, 48 - cy * scale]])
    crop = cv2.warpAffine(image, matrix, (96, 96), borderValue=0.0).astype(np.float64)
    red, blue = (((crop[..., c] - 127.5) / 128.0).mean() for c in (0, 2))
    return 1 / (1 + math.exp(-2 * GENDER_GAIN * (red - blue)))


def test_estimator_on_the_detectors_faces(detector: InsightFaceDetector, estimator: InsightFaceAgeGender) -> None:
    image = picture(320, 320, [(112, 112, 96, RED), (8, 8, 64, BLUE)])
    faces = detector.detect(image)
    assert len(faces) == 1  # the tiny detector sees only red faces
    faces.append(DetectedFace(Box(8, 8, 72, 72, 0.9), ()))  # as another detector would give it
    results = estimator.estimate(image, faces)
    assert [r.gender for r in results] == ["Male", "Female"]
    for face, result in zip(faces, results, strict=True):
        assert result.age == pytest.approx(AGE_OUTPUT * 100, abs=1e-3)
        assert result.age_confidence == 0.0
        male = expected_male_probability(image, face.box)
        want = male if result.gender == "Male" else 1 - male
        assert 0.5 < result.gender_confidence <= 1.0
        assert result.gender_confidence == pytest.approx(want, abs=1e-4)
    assert estimator.name == f"insightface-{PACK}"


def test_estimator_confidence_follows_the_softmax(estimator: InsightFaceAgeGender) -> None:
    # A dim face: the gender scores are close, so the confidence is well below 1.
    image = picture(320, 320, [(112, 112, 96, (40, 0, 0))])
    box = Box(112, 112, 208, 208, 0.9)
    result = estimator.estimate(image, [DetectedFace(box, ())])[0]
    want = expected_male_probability(image, box)
    assert result.gender == "Male"
    assert 0.5 < want < 0.99
    assert result.gender_confidence == pytest.approx(want, abs=1e-4)


def test_estimator_handles_no_faces_and_faces_at_the_border(estimator: InsightFaceAgeGender) -> None:
    image = picture(100, 100, [(0, 0, 40, RED)])
    assert estimator.estimate(image, []) == []
    edge = DetectedFace(Box(-10, -10, 40, 40, 0.9), ())
    flat = DetectedFace(Box(50, 50, 50, 50, 0.9), ())  # an empty box must not divide by zero
    results = estimator.estimate(image, [edge, flat])
    assert len(results) == 2 and results[0].gender == "Male"
    assert all(0.5 <= r.gender_confidence <= 1.0 for r in results)


def test_estimator_finds_the_genderage_model_by_its_signature(tmp_path: Path) -> None:
    write_pack(tmp_path, "renamed", {"a_det.onnx": scrfd_graph(), "b_attributes.onnx": genderage_graph()})
    model = InsightFaceAgeGender(tmp_path, "renamed")
    model.prepare()
    result = model.estimate(picture(320, 320, [(112, 112, 96, BLUE)]), [DetectedFace(Box(112, 112, 208, 208, 1), ())])
    assert result[0].gender == "Female"


# --- configuration -----------------------------------------------------------------


def test_router_builds_the_insightface_backends_from_settings(home: Path) -> None:
    detector = router.build_face_detector(config(home))
    estimator = router.build_age_gender_estimator(dataclasses.replace(config(home), agegender_flip=True, min_gender_confidence=0.75))
    model = estimator.estimator.estimator  # inside the opt-in threshold and mirrored view
    assert isinstance(detector, InsightFaceDetector)
    assert isinstance(model, InsightFaceAgeGender)
    assert detector.directory == model.directory == home / "models" / PACK
    detector.prepare()
    estimator.prepare()
    image = picture(320, 320, [(112, 112, 96, RED)])
    assert [r.gender for r in estimator.estimate(image, detector.detect(image))] == ["Male"]


def test_environment_variables_choose_the_pack(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDMARK_BACKEND", "insightface")
    monkeypatch.setenv("AGEGENDER_BACKEND", "insightface")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(home))
    monkeypatch.setenv("INSIGHTFACE_PACK", PACK)
    loaded = settings.load()
    assert router.build_face_detector(loaded).directory == home.resolve() / "models" / PACK
    assert router.build_age_gender_estimator(loaded).name == f"insightface-{PACK}"
    monkeypatch.setenv("AGEGENDER_FLIP", "1")
    assert router.build_age_gender_estimator(settings.load()).name == f"insightface-{PACK}+mirrored"


def test_68_points_come_from_dlib_on_top_of_scrfd(home: Path) -> None:
    # 68 points come from dlib's predictor on the detector's faces, not from the pack.
    dense = router.build_face_detector(config(home, landmark_points=68))
    assert dense.point_scheme.startswith("68-point")
    assert isinstance(dense.detector, InsightFaceDetector) and dense.detector.point_scheme == FIVE_POINT_SCHEME
    with pytest.raises(ValueError, match="5 or 106"):
        InsightFaceDetector(home, PACK, points=68)


# --- missing packs: a clear error, never a download --------------------------------


@pytest.mark.parametrize("make", [router.build_face_detector, router.build_age_gender_estimator])
def test_missing_pack_is_a_clear_error_without_download(tmp_path: Path, no_network: list, make) -> None:
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    backend = make(config(empty_home, insightface_pack="buffalo_l"))
    with pytest.raises(ModelPackMissing) as error:
        backend.prepare()
    message = str(error.value)
    assert str(empty_home / "models" / "buffalo_l") in message
    assert "insightface-cli model.download buffalo_l" in message
    assert "model-zoo/buffalo_l.zip" in message
    assert isinstance(error.value, RuntimeError)
    assert no_network == []
    assert snapshot(empty_home) == set()  # nothing was fetched or unpacked there


def test_pack_without_the_needed_model_is_a_clear_error(tmp_path: Path, no_network: list) -> None:
    write_pack(tmp_path, "detonly", {"det.onnx": scrfd_graph()})
    write_pack(tmp_path, "gaonly", {"genderage.onnx": genderage_graph()})
    before = snapshot(tmp_path)
    cases = [
        (InsightFaceAgeGender(tmp_path, "detonly"), "genderage"),
        (InsightFaceDetector(tmp_path, "detonly", points=106, max_side=SIDE), "2d106det"),
        (InsightFaceDetector(tmp_path, "gaonly", max_side=SIDE), "detection"),
    ]
    for backend, needed in cases:
        with pytest.raises(ModelPackMissing, match=needed) as error:
            backend.prepare()
        assert str(backend.directory) in str(error.value)
    assert no_network == [] and snapshot(tmp_path) == before


def test_nested_unzip_is_pointed_out(tmp_path: Path) -> None:
    directory = write_pack(tmp_path, "buffalo_s", {})
    nested = directory / "buffalo_s"
    nested.mkdir()
    onnx.save(genderage_graph(), str(nested / "genderage.onnx"))
    with pytest.raises(ModelPackMissing, match="move the .onnx files up one level"):
        InsightFaceAgeGender(tmp_path, "buffalo_s").prepare()


def test_the_network_guard_would_catch_insightfaces_own_download(tmp_path: Path, no_network: list) -> None:
    # What FaceAnalysis does with a pack *name* it cannot find: proves that the guard
    # above records a download attempt, so its empty list means none was made.
    from insightface.utils import ensure_available

    with pytest.raises(OSError):  # requests' ConnectionError is an OSError
        ensure_available("models", "buffalo_l", root=str(tmp_path))
    assert no_network != []
