"""End to end through the real stack: gRPC facade -> Celery chord -> Redis -> output files."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from PIL import Image

from grpc_facade.pipeline import JOIN_GRACE
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks import QUEUES
from tasks.shared import settings
from tests.conftest import SERVICES, RunningStack, call_service, variant
from tests.formats import header_with_garbage, png_bomb

LANDMARK_TASK = "tasks.landmark.detect_landmarks"


def process(stub: pb_grpc.ImageInputStub, data: bytes, recompute: bool = False) -> pb.CombinedResponse:
    return stub.ProcessImage(pb.ImageRequest(image_data=data, recompute=recompute), timeout=60)


def assert_queues_empty(stack: RunningStack) -> None:
    assert {q: stack.redis.llen(q) for q in QUEUES} == {q: 0 for q in QUEUES}


def test_a_crowds_small_faces_get_ages_and_genders(image_input, crowd_bytes: bytes) -> None:
    # The landmark worker's second, finer pass (SMALL_FACES_MAX_SIDE) finds the faces a
    # 640 px detection loses; the age/gender stage then answers for every one of them.
    response = process(image_input, crowd_bytes, recompute=True)
    assert response.status == "Success"
    assert len(response.faces) == 60
    assert all(face.found_by == "both" and face.gender in {"Male", "Female"} for face in response.faces)


def test_t1_six_faces_end_to_end(stack: RunningStack, image_input, t1_bytes: bytes) -> None:
    response = process(image_input, t1_bytes, recompute=True)
    key = hashlib.sha256(t1_bytes).hexdigest()
    assert not response.cached

    assert response.status == "Success"
    assert response.redis_key == key
    assert response.landmark_response.status == "Success"
    assert response.age_gender_response.status == "Success"
    assert response.storage_response.status == "Success"
    assert response.landmark_response.runtime > 0 and response.age_gender_response.runtime > 0
    assert len(response.faces) == len(response.landmark_response.faces) == 6
    assert len(response.age_gender_response.faces) == 6
    for face in response.faces:
        assert face.found_by == "both"
        assert 0 <= face.box.x1 < face.box.x2 <= 1280 and 0 <= face.box.y1 < face.box.y2 <= 886
        assert len(face.landmarks) == 5
        assert 1 <= face.age <= 100
        assert face.gender in {"Male", "Female", "Unknown"}
        assert 0 < face.gender_confidence <= 1 and 0 < face.age_confidence <= 1

    # The JSON in output/ keeps the original shape and adds the matched faces.
    json_path = stack.output_dir / f"{key}.json"
    image_path = stack.output_dir / f"{key}.jpg"
    # Names relative to OUTPUT_DIR: the same on every machine that mounts the folder.
    assert response.storage_response.json_path == f"{key}.json"
    assert response.storage_response.image_path == f"{key}.jpg"
    document = json.loads(json_path.read_text())
    assert document["redis_key"] == key
    assert document["image_path"] == f"{key}.jpg"
    assert len(document["results"]["landmark_service"]["landmarks"]) == 6
    assert all(len(box) == 4 for box in document["results"]["landmark_service"]["landmarks"])
    assert len(document["results"]["agegender_service"]["age"]) == 6
    assert set(document["results"]["agegender_service"]["gender"]) <= {"Male", "Female", "Unknown"}
    assert len(document["faces"]) == 6
    assert {"box", "landmarks", "age", "gender", "age_confidence", "gender_confidence"} <= set(document["faces"][0])
    assert document["stages"]["landmark"]["status"] == "Success"
    assert document["stages"]["agegender"]["runtime"] > 0
    # Faces were detected once: the age/gender stage used the landmark stage's detections.
    assert document["stages"]["agegender"]["detection"] == "landmark stage"
    assert all(face["found_by"] == "both" for face in document["faces"])
    with Image.open(image_path) as saved:
        saved.load()
        assert saved.size == (1280, 886)
    assert not list(stack.output_dir.glob(".*.tmp"))

    # Both stage results and the image are in Redis under the documented keys, for
    # AFTER_RUN_TTL now that output/ holds them; the merged outcome for RESULT_TTL.
    config = settings.load()
    assert stack.redis.get(key) == t1_bytes
    assert len(json.loads(stack.redis.get(f"{key}:landmark"))["faces"]) == 6
    assert len(json.loads(stack.redis.get(f"{key}:agegender"))["faces"]) == 6
    for stored in (key, f"{key}:landmark", f"{key}:agegender"):
        assert 0 < stack.redis.ttl(stored) <= config.after_run_ttl
    assert stack.redis.ttl(f"{key}:result") > config.result_ttl - 60
    assert_queues_empty(stack)


def test_celery_results_of_an_answered_run_leave_redis_soon(stack: RunningStack, image_input, astronaut_bytes: bytes) -> None:
    # Celery keeps them IMAGE_TTL (an hour), for runs waiting in a backlog; once the facade
    # has the answer they would only take room.
    def celery_results() -> set[bytes]:
        return set(stack.redis.scan_iter("celery-task-meta-*", count=1000))

    before = celery_results()
    assert process(image_input, variant(astronaut_bytes, 61)).status == "Success"
    run = celery_results() - before
    assert len(run) == len(QUEUES)  # one task per stage
    assert all(0 < stack.redis.ttl(meta) <= max(settings.load().after_run_ttl, JOIN_GRACE) for meta in run)


def test_image_without_faces_is_a_success_with_empty_lists(stack: RunningStack, image_input, no_face_bytes: bytes) -> None:
    response = process(image_input, no_face_bytes)
    assert response.status == "Success"
    assert len(response.faces) == 0
    assert len(response.landmark_response.faces) == 0 and len(response.age_gender_response.faces) == 0
    document = json.loads((stack.output_dir / f"{response.redis_key}.json").read_text())
    assert document["results"]["landmark_service"]["landmarks"] == []
    assert document["faces"] == []
    # A PNG input is stored as a JPEG.
    with Image.open(stack.output_dir / f"{response.redis_key}.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (320, 240)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 3]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t1: b"", "empty"),
        (lambda t1: b"this is not an image at all" * 50, "not a recognised image"),
        (truncated, "truncated or corrupt"),
        (header_with_garbage, "truncated or corrupt"),
        (lambda t1: png_bomb(), "MAX_IMAGE_PIXELS"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "header-then-garbage", "decompression-bomb"],
)
@pytest.mark.parametrize("service", SERVICES)
def test_bad_input_is_invalid_argument_and_leaves_nothing(
    stack: RunningStack, t1_bytes: bytes, make, message: str, service: str
) -> None:
    data = make(t1_bytes)
    before = set(stack.output_dir.glob("*")) if stack.output_dir.exists() else set()
    with pytest.raises(grpc.RpcError) as raised:
        call_service(stack, service, data)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()
    key = hashlib.sha256(data).hexdigest()
    assert not stack.redis.exists(key, f"{key}:landmark", f"{key}:agegender")
    assert (set(stack.output_dir.glob("*")) if stack.output_dir.exists() else set()) == before
    assert_queues_empty(stack)


def test_landmark_service_alone(stack: RunningStack, astronaut_bytes: bytes) -> None:
    stub = pb_grpc.FaceLandmarkDetectionStub(stack.channel)
    response = stub.DetectLandmarks(pb.LandmarkRequest(image_data=astronaut_bytes), timeout=60)
    assert response.status == "Success"
    assert response.redis_key == hashlib.sha256(astronaut_bytes).hexdigest()
    assert response.point_scheme.startswith("5-point")
    (face,) = response.faces
    assert len(face.points) == 5 and 0 <= face.box.x1 < face.box.x2 <= 512
    assert json.loads(stack.redis.get(f"{response.redis_key}:landmark"))["status"] == "Success"


def test_age_gender_service_alone(stack: RunningStack, astronaut_bytes: bytes) -> None:
    stub = pb_grpc.AgeGenderEstimationStub(stack.channel)
    data = variant(astronaut_bytes, 31)  # bytes no other test sends: no landmark stage has seen them
    response = stub.EstimateAgeGender(pb.AgeGenderRequest(image_data=data), timeout=60)
    assert response.status == "Success"
    (face,) = response.faces
    assert face.gender == "Female" and 1 <= face.age <= 100
    stored = json.loads(stack.redis.get(f"{response.redis_key}:agegender"))
    assert stored["faces"][0]["gender"] == "Female"
    assert stored["detection"] == "own"  # no faces stored for this image: the stage detects them itself
    # Once the landmark stage has stored faces for these bytes, the stage takes them.
    pb_grpc.FaceLandmarkDetectionStub(stack.channel).DetectLandmarks(pb.LandmarkRequest(image_data=data), timeout=60)
    stub.EstimateAgeGender(pb.AgeGenderRequest(image_data=data), timeout=60)
    assert json.loads(stack.redis.get(f"{response.redis_key}:agegender"))["detection"] == "landmark stage"


def test_storage_service_alone_writes_what_redis_holds(stack: RunningStack) -> None:
    # An image no stage has seen: storage writes it with both stages recorded as missing.
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    response = pb_grpc.DataStorageStub(stack.channel).StoreData(pb.StorageRequest(image_data=data), timeout=60)
    assert response.status == "Success"
    document = json.loads((stack.output_dir / f"{response.redis_key}.json").read_text())
    assert document["status"] == "Failure"
    assert document["stages"]["landmark"]["status"] == "Missing"
    assert (stack.output_dir / f"{response.redis_key}.jpg").read_bytes() == data


def test_concurrent_requests_all_complete(stack: RunningStack, image_input, t1_bytes: bytes, astronaut_bytes: bytes) -> None:
    images = [variant(data, n) for n in range(4) for data in (t1_bytes, astronaut_bytes)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda data: process(image_input, data), images))
    assert [r.status for r in responses] == ["Success"] * 8
    assert [r.cached for r in responses] == [False] * 8
    assert [len(r.faces) for r in responses] == [6, 1] * 4
    assert len({r.redis_key for r in responses}) == 8
    assert_queues_empty(stack)


def same_pixels(data: bytes, n: int) -> bytes:
    """The picture re-encoded the same way each time, but for a comment: other bytes and
    key, the very same pixels."""
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.save(buffer, format="JPEG", quality=90, comment=f"copy {n}".encode())
    return buffer.getvalue()


def test_answers_do_not_depend_on_load(stack: RunningStack, image_input, t1_bytes: bytes) -> None:
    alone = process(image_input, same_pixels(t1_bytes, 0))
    with ThreadPoolExecutor(max_workers=6) as pool:
        busy = list(pool.map(lambda n: process(image_input, same_pixels(t1_bytes, n)), range(1, 7)))
    assert len({r.redis_key for r in [alone, *busy]}) == 7 and not any(r.cached for r in [alone, *busy])
    for response in busy:
        assert [f.gender for f in response.faces] == [f.gender for f in alone.faces]
        for a, b in zip(alone.faces, response.faces, strict=True):
            assert (b.box.x1, b.box.y1, b.box.x2, b.box.y2) == pytest.approx((a.box.x1, a.box.y1, a.box.x2, a.box.y2), abs=1)
            assert b.age == pytest.approx(a.age, abs=1)


def test_same_image_twice_is_answered_from_the_stored_result(stack: RunningStack, image_input, astronaut_bytes: bytes) -> None:
    data = variant(astronaut_bytes, 10)
    first = process(image_input, data)
    runs = stack.tasks_run(LANDMARK_TASK)
    second = process(image_input, data)
    assert (first.cached, second.cached) == (False, True)
    assert second.redis_key == first.redis_key
    assert list(second.faces) == list(first.faces)
    assert second.landmark_response.runtime == first.landmark_response.runtime
    assert stack.tasks_run(LANDMARK_TASK) == runs  # the models did not run again
    again = process(image_input, data, recompute=True)
    assert not again.cached and again.status == "Success"
    assert stack.tasks_run(LANDMARK_TASK) == runs + 1



def test_a_repeat_after_redis_forgot_the_answer_is_answered_from_the_output_folder(
    stack: RunningStack, image_input, astronaut_bytes: bytes
) -> None:
    data = variant(astronaut_bytes, 13)
    first = process(image_input, data)
    stack.redis.delete(f"{first.redis_key}:result")  # as after RESULT_TTL
    runs = stack.tasks_run(LANDMARK_TASK)
    second = process(image_input, data)
    assert second.cached and second.status == "Success"
    assert [(f.box, f.age, f.gender) for f in second.faces] == [(f.box, f.age, f.gender) for f in first.faces]
    assert second.storage_response.json_path == first.storage_response.json_path
    assert stack.tasks_run(LANDMARK_TASK) == runs  # the models did not run again

def test_concurrent_duplicates_run_once(stack: RunningStack, image_input, t1_bytes: bytes) -> None:
    data = variant(t1_bytes, 11)
    runs = stack.tasks_run(LANDMARK_TASK)
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: process(image_input, data), range(4)))
    assert [r.status for r in responses] == ["Success"] * 4
    assert len({r.redis_key for r in responses}) == 1
    assert stack.tasks_run(LANDMARK_TASK) == runs + 1
    assert not stack.redis.exists(f"{responses[0].redis_key}:running")


def test_a_run_whose_claimant_died_before_sending_it_is_sent_by_a_request_that_joined_it(
    stack: RunningStack, image_input, astronaut_bytes: bytes
) -> None:
    data = variant(astronaut_bytes, 15)
    key = hashlib.sha256(data).hexdigest()
    # What a facade leaves that dies right after claiming the image: a claim, no image, no run.
    orphan = str(uuid.uuid4())
    stack.redis.set(f"{key}:running", orphan, px=60_000)
    response = process(image_input, data)  # it joins that run, then finds it never sent
    assert response.status == "Success" and len(response.faces) == 1
    facade_log = (stack.log_dir / "facade.log").read_text()
    assert f"joining the run already under way ({orphan})" in facade_log
    assert "the facade that claimed this run died before sending it; sent the run again" in facade_log
    assert stack.redis.get(f"{key}:running") == orphan.encode()  # the claim stays its claimant's, until it expires


def test_get_result_returns_the_stored_result(stack: RunningStack, image_input, astronaut_bytes: bytes) -> None:
    data = variant(astronaut_bytes, 12)
    processed = process(image_input, data)
    fetched = image_input.GetResult(pb.ResultRequest(redis_key=processed.redis_key), timeout=10)
    assert fetched.cached and fetched.status == "Success"
    assert list(fetched.faces) == list(processed.faces)
    assert fetched.storage_response.json_path == processed.storage_response.json_path
    # Once Redis has forgotten it, the JSON in output/ still answers.
    stack.redis.delete(f"{processed.redis_key}:result")
    from_file = image_input.GetResult(pb.ResultRequest(redis_key=processed.redis_key), timeout=10)
    assert list(from_file.faces) == list(processed.faces)


@pytest.mark.parametrize(("key", "code"), [("0" * 64, grpc.StatusCode.NOT_FOUND), ("../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT)])
def test_get_result_errors(image_input, key: str, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        image_input.GetResult(pb.ResultRequest(redis_key=key), timeout=10)
    assert raised.value.code() == code


@pytest.mark.parametrize("service", SERVICES)
def test_too_large_message_is_resource_exhausted(stack: RunningStack, service: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call_service(stack, service, b"\0" * (33 * 1024 * 1024))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_annotated_copy_on_request(stack: RunningStack, image_input, t1_bytes: bytes) -> None:
    data = variant(t1_bytes, 13)
    plain = process(image_input, data)
    assert plain.storage_response.annotated_path == ""
    # Asking for the annotated copy of an image processed without it runs it again.
    response = image_input.ProcessImage(pb.ImageRequest(image_data=data, annotate=True), timeout=60)
    assert not response.cached
    path = stack.output_dir / f"{response.redis_key}.annotated.jpg"
    assert response.storage_response.annotated_path == path.name
    with Image.open(path) as drawn, Image.open(io.BytesIO(data)) as original:
        assert drawn.size == original.size
        drawn_pixels = drawn.convert("RGB")
        face = response.faces[0]
        # The box's top edge is drawn in green.
        r, g, b = drawn_pixels.getpixel((round((face.box.x1 + face.box.x2) / 2), round(face.box.y1) + 1))
        assert g > 150 and r < 120 and b < 140
    # Now the stored result has its annotated copy: the next request is answered from it.
    again = image_input.ProcessImage(pb.ImageRequest(image_data=data, annotate=True), timeout=60)
    assert again.cached and again.storage_response.annotated_path == path.name


def test_annotated_copy_of_a_png(stack: RunningStack, image_input, no_face_bytes: bytes) -> None:
    response = image_input.ProcessImage(pb.ImageRequest(image_data=no_face_bytes, annotate=True, recompute=True), timeout=60)
    assert response.status == "Success"
    for path in (response.storage_response.image_path, response.storage_response.annotated_path):
        with Image.open(stack.output_dir / path) as saved:
            assert saved.format == "JPEG" and saved.size == (320, 240)
    # Rebuilt from output/ when Redis has forgotten it, the result still names the annotated copy.
    stack.redis.delete(f"{response.redis_key}:result")
    fetched = image_input.GetResult(pb.ResultRequest(redis_key=response.redis_key), timeout=10)
    assert fetched.storage_response.annotated_path == response.storage_response.annotated_path
