"""Faults, each on a stack of this module's own: nothing is lost, nothing hangs.

The stack's Redis has a password (to check that no log shows it) and a short visibility
timeout (so that a task whose worker died is handed out again within seconds), with the
age/gender task's wait for shared faces kept below it (or a waiting task runs twice).
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from celery import Celery
from celery.app.control import Inspect
from PIL import Image

from grpc_facade.pipeline import MEMORY_CHECK_EVERY
from grpc_facade.stack import FACADE_ARGV, Stack, health_serving, wait_until
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared import redis_store
from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import free_port, kill, private_stack, variant

PASSWORD = "fault-test-password-3b1f"
LOST_CHECK = 2  # seconds between the facade's looks for a lost message of a slow run
AFTER_RUN = 10  # seconds an answered image stays in Redis (AFTER_RUN_TTL)
# The facade takes new images below a quarter of Redis's maxmemory: the rest is room for
# the runs under way (each image, and Redis's buffers for each stage that reads it), since
# the test gives Redis only a few megabytes.
MEMORY_LIMIT = 0.25


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("faults")
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    with private_stack(
        base, redis_url=url, VISIBILITY_TIMEOUT="8", LOST_MESSAGE_CHECK=str(LOST_CHECK), AFTER_RUN_TTL=str(AFTER_RUN),
        REDIS_MEMORY_LIMIT=str(MEMORY_LIMIT),
    ) as stack:
        yield stack


def stub(stack: Stack | str) -> pb_grpc.ImageInputStub:
    """``ImageInput`` of ``stack``'s facade, or of the facade at the address ``stack``."""
    return pb_grpc.ImageInputStub(grpc.insecure_channel(stack if isinstance(stack, str) else stack.grpc_target))


def replace_worker(stack: Stack, name: str, **env: str) -> None:
    """Kill worker ``name`` and start it again with ``env``, waiting until the stack serves."""
    kill(stack, name)
    stack.restart(name, **env)
    wait_serving(stack)


def wait_serving(stack: Stack, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not health_serving(stack.grpc_target):
        assert time.monotonic() < deadline, "the stack did not serve again"
        time.sleep(0.3)


def test_a_failing_stage_still_ends_the_chord(faulty: Stack, astronaut_bytes: bytes) -> None:
    # An age/gender worker configured with a far lower pixel limit than the facade (as a
    # worker on another machine may be) refuses every image: its stage fails.
    replace_worker(faulty, "worker-agegender", MAX_IMAGE_PIXELS="1000")
    try:
        data = variant(astronaut_bytes, 40)
        response = stub(faulty).ProcessImage(pb.ImageRequest(image_data=data), timeout=60)
        assert response.status == "Failure"
        assert response.landmark_response.status == "Success" and len(response.landmark_response.faces) == 1
        assert response.age_gender_response.status == "Failure"
        assert "MAX_IMAGE_PIXELS" in response.age_gender_response.error
        assert response.storage_response.status == "Success"
        document = json.loads((faulty.config.output_dir / response.storage_response.json_path).read_text())
        assert document["stages"]["agegender"]["status"] == "Failure"
        assert [face["found_by"] for face in document["faces"]] == ["landmark"]
    finally:
        replace_worker(faulty, "worker-agegender")
    # A failed run is not stored as the answer: the same image now computes in full.
    again = stub(faulty).ProcessImage(pb.ImageRequest(image_data=data), timeout=60)
    assert again.status == "Success" and not again.cached and again.faces[0].gender == "Female"


def test_unwritable_output_fails_clearly_and_keeps_the_image(faulty: Stack, astronaut_bytes: bytes, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    replace_worker(faulty, "worker-storage", OUTPUT_DIR=str(blocker / "output"))
    data = variant(astronaut_bytes, 41)
    try:
        response = stub(faulty).ProcessImage(pb.ImageRequest(image_data=data), timeout=60)
        assert response.status == "Failure"
        assert response.storage_response.status == "Failure"
        assert "not-a-folder" in response.storage_response.error
        assert response.storage_response.json_path == ""
        redis = faulty_redis(faulty)
        # Kept for IMAGE_TTL, not the AFTER_RUN_TTL of a run that succeeded.
        assert redis.get(response.redis_key) == data and redis.ttl(response.redis_key) > faulty.config.after_run_ttl
        assert not list((faulty.config.output_dir).glob(f"{response.redis_key}*"))
    finally:
        replace_worker(faulty, "worker-storage")
    retried = stub(faulty).ProcessImage(pb.ImageRequest(image_data=data), timeout=60)
    assert retried.status == "Success"
    assert (faulty.config.output_dir / retried.storage_response.json_path).is_file()


def faulty_redis(stack: Stack):
    import redis

    return redis.Redis.from_url(stack.config.redis_url)


def big_photo(astronaut_bytes: bytes) -> bytes:
    """A 2048-pixel photo: with DETECT_MAX_SIDE=2048 its landmark task takes seconds (and
    fewer than VISIBILITY_TIMEOUT, or Redis would hand it out twice)."""
    with Image.open(io.BytesIO(astronaut_bytes)) as image:
        buffer = io.BytesIO()
        image.resize((2048, 2048)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def landmark_inspector(stack: Stack, timeout: float = 30) -> Inspect:
    """Questions to the landmark workers only, ended by their replies rather than by the
    timeout: a poll then takes milliseconds, not the second a task may take to its end."""
    control = Celery(broker=stack.config.redis_url).control
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [name for name in control.inspect(timeout=1).ping() or {} if name.startswith("landmark")]
        if names:
            return control.inspect(destination=names, limit=len(names), timeout=1)
    raise AssertionError("no landmark worker answers")


def active_landmark_task(inspector: Inspect, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tasks in (inspector.active() or {}).values():
            if tasks:
                return tasks[0]
        time.sleep(0.01)
    raise AssertionError("the landmark task never started")


def send_in_background(stack: Stack | str, data: bytes, timeout: float) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["response"] = stub(stack).ProcessImage(pb.ImageRequest(image_data=data), timeout=timeout)
        except grpc.RpcError as error:
            outcome["error"] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("victim", ["pool process", "whole worker"])
def test_landmark_worker_killed_mid_task_the_request_completes(faulty: Stack, astronaut_bytes: bytes, victim: str) -> None:
    replace_worker(faulty, "worker-landmark", DETECT_MAX_SIDE="2048")
    try:
        data = variant(big_photo(astronaut_bytes), 0 if victim == "pool process" else 1)
        inspector = landmark_inspector(faulty)
        thread, outcome = send_in_background(faulty, data, timeout=120)
        task = active_landmark_task(inspector)
        if victim == "pool process":
            import os
            import signal

            os.kill(task["worker_pid"], signal.SIGKILL)  # the worker replaces it; the task is requeued
        else:
            kill(faulty, "worker-landmark")  # unacknowledged: Redis hands it out again
            faulty.restart("worker-landmark", DETECT_MAX_SIDE="2048")
        thread.join(timeout=150)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        response = outcome["response"]
        assert response.status == "Success" and len(response.faces) >= 1
        # Killed mid-task, not after it: the same task was handed out a second time.
        log = (faulty.log_dir / "worker-landmark.log").read_text(errors="replace")
        assert log.count(f"[{task['id']}] received") == 2, log[-3000:]
    finally:
        replace_worker(faulty, "worker-landmark")


def test_a_message_lost_with_a_worker_machine_is_sent_again(faulty: Stack, t1_bytes: bytes) -> None:
    redis = faulty_redis(faulty)
    facade_log = faulty.log_dir / "facade.log"
    kill(faulty, "worker-agegender")
    try:
        thread, outcome = send_in_background(faulty, variant(t1_bytes, 45), timeout=90)
        wait_until(lambda: redis.llen("agegender") == 1, 30, "the landmark task's age/gender message")
        # A message waiting in its queue is not lost: the facade looks and leaves it.
        time.sleep(2.5 * LOST_CHECK)
        assert redis.llen("agegender") == 1 and "was lost" not in facade_log.read_text()
        # Taken from the queue and never recorded as held: what a worker machine that dies
        # in the middle of BRPOP leaves behind.
        assert redis.rpop("agegender") is not None
        wait_until(lambda: redis.llen("agegender") == 1, 30, "the run sent again")
        assert "a message of this run was lost" in facade_log.read_text()
    finally:
        faulty.restart("worker-agegender")
    thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    response = outcome["response"]
    assert response.status == "Success"
    assert len(response.faces) == 6 and all(face.gender in ("Male", "Female") for face in response.faces)
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{faulty.config.metrics_port}/metrics", timeout=10).read().decode()
    assert "facade_runs_sent_again_total 1.0" in scrape


def test_a_facade_that_joined_a_run_sends_it_again_when_its_sender_died_and_a_message_was_lost(
    faulty: Stack, t1_bytes: bytes
) -> None:
    redis = faulty_redis(faulty)
    other_log = faulty.log_dir / "other-facade.log"
    other_target = f"localhost:{free_port()}"
    env = dict(faulty.env, GRPC_PORT=other_target.rsplit(":", 1)[1], METRICS_PORT="0")
    with open(other_log, "wb") as output:
        other = subprocess.Popen(FACADE_ARGV, env=env, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: health_serving(other_target), 60, "the second facade", other)
        kill(faulty, "worker-agegender")
        try:
            data = variant(t1_bytes, 46)
            sender, sent = send_in_background(faulty, data, timeout=90)
            wait_until(lambda: redis.llen("agegender") == 1, 30, "the landmark task's age/gender message")
            joiner, joined = send_in_background(other_target, data, timeout=90)
            wait_until(lambda: "joining the run already under way" in other_log.read_text(), 30, "the second facade joining")
            # The sender's machine dies, and with it the message its worker was taking.
            kill(faulty, "facade")
            assert redis.rpop("agegender") is not None
            wait_until(lambda: redis.llen("agegender") == 1, 30, "the run sent again")
            assert "a message of this run was lost" in other_log.read_text()
        finally:
            faulty.restart("worker-agegender")
            if faulty.child("facade").process.poll() is not None:
                faulty.restart("facade")
        joiner.join(timeout=120)
        sender.join(timeout=30)
        assert not joiner.is_alive() and "error" not in joined, joined.get("error")
        assert joined["response"].status == "Success" and len(joined["response"].faces) == 6
        assert sent["error"].code() == grpc.StatusCode.UNAVAILABLE  # its facade was gone
    finally:
        other.terminate()
        other.wait(timeout=30)
        wait_serving(faulty)


def test_no_landmark_worker_means_deadline_exceeded_and_nothing_lost(faulty: Stack, t1_bytes: bytes) -> None:
    kill(faulty, "worker-landmark")
    data = variant(t1_bytes, 42)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            stub(faulty).ProcessImage(pb.ImageRequest(image_data=data), timeout=3)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        faulty.restart("worker-landmark")
    # The queued task runs once a worker is back: the result is written all the same.
    key = __import__("hashlib").sha256(data).hexdigest()
    json_path = faulty.config.output_dir / f"{key}.json"
    deadline = time.monotonic() + 90
    while not json_path.exists():
        assert time.monotonic() < deadline, "the queued request was lost"
        time.sleep(0.3)
    assert len(json.loads(json_path.read_text())["faces"]) == 6


def test_redis_down_is_unavailable_then_serves_again(faulty: Stack, astronaut_bytes: bytes) -> None:
    kill(faulty, "redis")
    try:
        with pytest.raises(grpc.RpcError) as raised:
            stub(faulty).ProcessImage(pb.ImageRequest(image_data=variant(astronaut_bytes, 43)), timeout=20)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        faulty.restart("redis")
    wait_serving(faulty)
    response = stub(faulty).ProcessImage(pb.ImageRequest(image_data=variant(astronaut_bytes, 44)), timeout=60)
    assert response.status == "Success"



def test_redis_filling_up_refuses_new_images_and_keeps_every_worker(faulty: Stack, t1_bytes: bytes) -> None:
    # Room for a few dozen images below maxmemory: a burst fills it faster than answered
    # images leave (AFTER_RUN_TTL). Without the facade's limit (REDIS_MEMORY_LIMIT) the
    # workers' acks and results would hit the full Redis, which stops every worker for good.
    redis = faulty_redis(faulty)
    copies = []
    with Image.open(io.BytesIO(t1_bytes)) as image:
        for n in range(100):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90, comment=f"fill {n}".encode())
            copies.append(buffer.getvalue())
    redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) + 16 * 2**20)

    def send(data: bytes) -> str:
        try:
            return stub(faulty).ProcessImage(pb.ImageRequest(image_data=data), timeout=60).status
        except grpc.RpcError as error:
            return error.code().name

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, copies))
    finally:
        redis.config_set("maxmemory", 0)
    assert set(answers) == {"Success", "RESOURCE_EXHAUSTED"}, answers
    worker_logs = "".join(path.read_text(errors="replace") for path in faulty.log_dir.glob("worker-*.log"))
    assert "OutOfMemoryError" not in worker_logs
    # Once the answered images have left Redis, new ones are taken again.
    later = variant(t1_bytes, 47)
    wait_until(lambda: send(later) == "Success", AFTER_RUN + 30, "an image accepted after the burst")

def test_kept_results_make_room_for_new_images(faulty: Stack, astronaut_bytes: bytes) -> None:
    # Answers kept for repeats (RESULT_TTL, a day) fill a Redis with a maxmemory under
    # steady traffic; they are a cache of output/ and must not stop new work.
    redis = faulty_redis(faulty)
    store = redis_store.ImageStore(redis, image_ttl=60, result_ttl=600)
    keys = [f"{n:064x}" for n in range(2000)]  # 20 MB, more than earlier tests' images about to expire
    for key in keys:
        store.put_outcome(key, {"document": {"faces": ["x" * 10_000]}, "storage": {}})
    redis.config_set("maxmemory", int(redis_store.memory(redis)[0] / (MEMORY_LIMIT + 0.05)))
    time.sleep(MEMORY_CHECK_EVERY)  # the facade trusts its last reading of Redis's memory that long
    try:
        response = stub(faulty).ProcessImage(pb.ImageRequest(image_data=variant(astronaut_bytes, 49)), timeout=60)
        assert response.status == "Success"
        kept = [bool(redis.exists(f"{key}:result")) for key in keys]
        assert not kept[0] and kept[-1] and kept == sorted(kept)  # the oldest went first
        assert redis.exists(f"{response.redis_key}:result")  # the new answer is kept in turn
    finally:
        redis.config_set("maxmemory", 0)
        redis.delete(*(f"{key}:result" for key in keys))
        redis.zrem(redis_store.KEPT_RESULTS, *keys)
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{faulty.config.metrics_port}/metrics", timeout=10).read().decode()
    counted = next(line for line in scrape.splitlines() if line.startswith("facade_kept_results_dropped_total "))
    assert float(counted.split()[1]) >= kept.count(False)  # with any older answers of this module's runs


def test_no_log_shows_the_redis_password(faulty: Stack) -> None:
    logs = list(faulty.log_dir.glob("*.log"))
    assert len(logs) >= 5
    for path in logs:
        assert PASSWORD not in path.read_text(errors="replace"), path.name
