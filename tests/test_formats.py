"""Every image format and shape a client may send, through decoding and through the stack."""

from __future__ import annotations

import grpc
import numpy as np
from PIL import Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.backends.base import Box
from tasks.shared.imaging import ImageError, decode_image
from tests.conftest import T1_JPG, RunningStack, call_service
from tests.formats import accepted_variants, exif_rotated, one_pixel

LIMIT = 50_000_000
T1 = T1_JPG.read_bytes()
VARIANTS = accepted_variants(T1)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_format_decodes_to_the_same_picture(name: str) -> None:
    reference = decode_image(T1, LIMIT).astype(np.float32).mean(axis=2)
    decoded = decode_image(VARIANTS[name], LIMIT)
    assert decoded.shape == (886, 1280, 3) and decoded.dtype == np.uint8
    # Same picture, not clipped to white or black: close to the original's brightness.
    assert abs(decoded.astype(np.float32).mean(axis=2) - reference).mean() < 12


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_format_finds_the_six_faces(stack: RunningStack, image_input, name: str) -> None:
    response = image_input.ProcessImage(pb.ImageRequest(image_data=VARIANTS[name]), timeout=60)
    assert response.status == "Success"
    assert len(response.faces) == 6
    assert (stack.output_dir / f"{response.redis_key}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_format_through_each_stage_service(stack: RunningStack, name: str) -> None:
    data = VARIANTS[name]
    landmarks = call_service(stack, "DetectLandmarks", data, timeout=60)
    assert landmarks.status == "Success" and len(landmarks.faces) == 6
    agegender = call_service(stack, "EstimateAgeGender", data, timeout=60)
    assert agegender.status == "Success" and len(agegender.faces) == 6
    storage = call_service(stack, "StoreData", data, timeout=60)
    assert storage.status == "Success"
    with Image.open(stack.output_dir / storage.image_path) as saved:
        assert saved.format == "JPEG" and saved.size == (1280, 886)


def boxes(response: pb.CombinedResponse) -> list[Box]:
    return [Box(f.box.x1, f.box.y1, f.box.x2, f.box.y2, f.box.score) for f in response.faces]


def test_exif_rotation_is_processed_upright(image_input) -> None:
    upright = image_input.ProcessImage(pb.ImageRequest(image_data=T1), timeout=60)
    rotated = image_input.ProcessImage(pb.ImageRequest(image_data=exif_rotated(T1)), timeout=60)
    assert rotated.status == "Success" and len(rotated.faces) == 6
    # Boxes are in the upright frame: each matches a face of the upright photo.
    for box in boxes(rotated):
        assert max(box.iou(other) for other in boxes(upright)) > 0.6


def test_one_pixel_image_is_a_success_without_faces(image_input) -> None:
    response = image_input.ProcessImage(pb.ImageRequest(image_data=one_pixel()), timeout=60)
    assert response.status == "Success" and len(response.faces) == 0


def mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Valid image bytes with some bytes overwritten, cut short, or both."""
    def mutate(changes: list[tuple[int, int]], cut: int) -> bytes:
        buffer = bytearray(data[: max(1, len(data) - cut)])
        for position, value in changes:
            buffer[position % len(buffer)] = value
        return bytes(buffer)
    return st.builds(
        mutate,
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=20),
        st.integers(0, len(data) // 2),
    )


SMALL = {name: VARIANTS[name] for name in ("png-alpha", "gif-palette", "webp", "grayscale-jpeg")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SMALL)).flatmap(lambda name: mutations(SMALL[name])))
def test_decoding_mutated_images_never_fails_otherwise(data: bytes) -> None:
    try:
        image = decode_image(data, LIMIT)
    except ImageError:
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


@pytest.fixture(scope="module")
def workers_before_fuzzing(stack: RunningStack) -> dict[str, list[int]]:
    processes = stack.worker_processes()
    assert len(processes) == 3
    return processes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mutations(VARIANTS["webp"]))
def test_mutated_images_never_crash_a_worker(stack: RunningStack, workers_before_fuzzing, data: bytes) -> None:
    stub = pb_grpc.FaceLandmarkDetectionStub(stack.channel)
    try:
        response = stub.DetectLandmarks(pb.LandmarkRequest(image_data=data), timeout=60)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert response.status == "Success"


def test_no_worker_process_died_while_fuzzing(stack: RunningStack, workers_before_fuzzing) -> None:
    assert stack.worker_processes() == workers_before_fuzzing
