"""Three machines, made of network namespaces on one bridge, as the issue describes them.

Host a: Redis (with a password) and the facade. Host b: a landmark and an age/gender
worker. Host c: the same, the storage worker and a second facade. Host d: a third facade
only. a and c use one shared results folder as ``OUTPUT_DIR``; b and d have none (b
writes no files). Every request is sent
from host a with the bundled client. Timeouts are the defaults (``VISIBILITY_TIMEOUT``):
what is measured here is what a deployment gets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from grpc_facade.stack import FACADE_ARGV, redis_server_argv, worker_argv
from tasks.shared.settings import PROJECT_ROOT
from tests.conftest import variant
from tests.netns import Network

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2's `ip` to make network namespaces (the hosts)",
)

PASSWORD = "multihost-test-password-7c2e"
GRPC_PORT = 50051  # each namespace has its own ports: no clash with anything outside
DEADLINE = 60.0  # the client's deadline per request, as in the issue
# The burst was 12 requests at concurrency 8; a request now takes a fraction of a
# second, and 64 keep the burst going well past the kill one second in.
BURST = 64
WORKERS = {"b": ("landmark", "agegender"), "c": ("landmark", "agegender", "storage")}
TASK_LINE = re.compile(r"Task (\S+)\[([0-9a-f-]{36})\] (received|succeeded)")


@dataclass
class Cluster:
    net: Network
    env: dict[str, str]
    shared: Path  # the results folder of hosts a and c
    logs: Path

    def target(self, host: str) -> str:
        return f"{self.net[host].address}:{GRPC_PORT}"

    def client(self, *args: str, timeout: float = 120) -> tuple[int, list[dict], str]:
        """The bundled client, run on host a: ``(exit code, its --json output, its log)``."""
        code, out, err = self.net.run("a", [sys.executable, "-m", "grpc_facade.client", "--no-progress", "--json", *args], self.env, timeout)
        return code, json.loads(out) if out.strip() else [], err

    def task_lines(self, host: str, queues: tuple[str, ...] | None = None) -> dict[str, set[str]]:
        """Task ids the workers of ``host`` (or those of ``queues``) logged as ``received`` and as ``succeeded``."""
        seen: dict[str, set[str]] = {"received": set(), "succeeded": set()}
        for queue in queues or WORKERS[host]:
            for _name, task_id, what in TASK_LINE.findall((self.logs / f"{host}-{queue}.log").read_text(errors="replace")):
                seen[what].add(task_id)
        return seen


def host_env(base: dict[str, str], output_dir: Path) -> dict[str, str]:
    return dict(base, OUTPUT_DIR=str(output_dir))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("multihost")
    shared, logs = base / "shared-results", base / "logs"
    shared.mkdir()
    logs.mkdir()
    net = Network(["a", "b", "c", "d"])
    env = {k: v for k, v in os.environ.items() if k not in {"VISIBILITY_TIMEOUT", "OUTPUT_DIR"}}
    env.update(
        REDIS_URL=f"redis://:{PASSWORD}@{net['a'].address}:6379/0",
        GRPC_PORT=str(GRPC_PORT),
        WORKER_CONCURRENCY="1",  # 5 worker processes load models on a 2-core machine
        PYTHONPATH=str(PROJECT_ROOT),
        PYTHONUNBUFFERED="1",  # logs reach their files before a SIGKILL
    )
    cluster = Cluster(net, env, shared, logs)
    try:
        net.create()
        net.spawn("a", redis_server_argv(6379, base, PASSWORD, bind=net["a"].address), env, logs / "a-redis.log")
        net.spawn("a", FACADE_ARGV, host_env(env, shared), logs / "a-facade.log")
        for host, queues in WORKERS.items():
            output_dir = shared if "storage" in queues else base / f"{host}-local"
            for queue in queues:
                net.spawn(host, worker_argv(queue, f"{queue}@{host}", 1), host_env(env, output_dir), logs / f"{host}-{queue}.log")
        net.spawn("c", FACADE_ARGV, host_env(env, shared), logs / "c-facade.log")
        net.spawn("d", FACADE_ARGV, host_env(env, base / "d-local"), logs / "d-facade.log")
        wait_ready(cluster)
        yield cluster
    finally:
        net.close()


def wait_ready(cluster: Cluster, timeout: float = 240) -> None:
    """Every worker has loaded its models, and every facade serves (checked from host a)."""
    deadline = time.monotonic() + timeout
    for host, queues in WORKERS.items():
        for queue in queues:
            log = cluster.logs / f"{host}-{queue}.log"
            while " ready." not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline, f"worker {queue}@{host} not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
    check = "import sys; from grpc_facade.stack import wait_until, health_serving as ok; [wait_until(lambda t=t: ok(t), 60, t) for t in sys.argv[1:]]"
    code, _, err = cluster.net.run("a", [sys.executable, "-c", check, *(cluster.target(host) for host in "acd")], cluster.env, 90)
    assert code == 0, err[-3000:]


def burst_images(folder: Path, data: bytes, count: int) -> list[str]:
    """``count`` different encodings of ``data`` in ``folder``; returns their keys in file order."""
    folder.mkdir()
    keys = []
    for n in range(count):
        encoded = variant(data, n)
        (folder / f"{n:02d}.jpg").write_bytes(encoded)
        keys.append(hashlib.sha256(encoded).hexdigest())
    return keys


def work_in_hand(cluster: Cluster, host: str) -> list[set[str]]:
    """Per worker of ``host``: the task ids it logged as received and not as succeeded."""
    return [(seen := cluster.task_lines(host, (queue,)))["received"] - seen["succeeded"] for queue in WORKERS[host]]


def wait_for_work_in_hand(cluster: Cluster, host: str, idle: tuple[str, ...] = (), timeout: float = 60) -> None:
    """Return once every worker of ``host`` but those of ``idle`` holds a task of the burst,
    and those of ``idle`` hold none (they wait for their next message)."""
    queues = WORKERS[host]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        in_hand = dict(zip(queues, work_in_hand(cluster, host), strict=True))
        if all(bool(tasks) != (queue in idle) for queue, tasks in in_hand.items()):
            return
        time.sleep(0.01)
    raise AssertionError(f"the workers of host {host} were never found so: busy but {idle}")


def test_a_worker_host_losing_power_mid_burst_costs_no_request(
    cluster: Cluster, t1_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = burst_images(tmp_path / "burst", t1_bytes, BURST)
    with open(cluster.logs / "a-client.log", "wb") as client_log:
        client = cluster.net.popen(
            "a",
            [sys.executable, "-m", "grpc_facade.client", "--no-progress", "--json", "--target", cluster.target("a"),
             "--concurrency", "8", "--timeout", str(DEADLINE), str(tmp_path / "burst")],
            cluster.env, stdout=subprocess.PIPE, stderr=client_log, text=True,
        )
    wait_for_work_in_hand(cluster, "b")
    time.sleep(1.0)  # one second into the burst, as in the issue
    # Its landmark worker holds a task (back after VISIBILITY_TIMEOUT); its age/gender worker
    # waits in BRPOP, which Redis may answer with a message after the power is gone (lost:
    # the facade sends that run again).
    wait_for_work_in_hand(cluster, "b", idle=("agegender",))
    killed_at = time.monotonic()
    assert cluster.net.power_off("b"), "host b had no process to kill"
    out, _ = client.communicate(timeout=2 * DEADLINE)
    recovered = time.monotonic() - killed_at
    sent_again = (cluster.logs / "a-facade.log").read_text().count("was lost with a worker")
    with capsys.disabled():
        print(f"\nmultihost: host b lost power mid-burst; the burst of {BURST} ended {recovered:.1f} s later; runs sent again: {sent_again}")

    outcomes = json.loads(out)
    assert [o["error"] for o in outcomes] == [""] * BURST, (cluster.logs / "a-client.log").read_text()[-3000:]
    assert client.returncode == 0
    responses = [o["response"] for o in outcomes]
    assert [r["redis_key"] for r in responses] == keys
    for key, response in zip(keys, responses):
        assert response["status"] == "Success"
        assert len(response["faces"]) == 6
        # Names relative to the shared folder, not a path on host c.
        assert response["storage_response"]["json_path"] == f"{key}.json"
        assert response["storage_response"]["image_path"] == f"{key}.jpg"
        document = json.loads((cluster.shared / f"{key}.json").read_text())
        assert document["redis_key"] == key and document["image_path"] == f"{key}.jpg"
        assert len(document["faces"]) == 6 and document["status"] == "Success"
        assert (cluster.shared / f"{key}.jpg").read_bytes() == (tmp_path / "burst" / f"{keys.index(key):02d}.jpg").read_bytes()
    assert recovered <= 30, f"recovery took {recovered:.1f} s (target: 30 s)"

    # The tasks host b held when it died were handed to host c and run there.
    held = set().union(*work_in_hand(cluster, "b"))
    assert held, "host b held no task when it died: the test proved nothing"
    on_c = cluster.task_lines("c")
    assert held <= on_c["succeeded"], f"never run on host c: {sorted(held - on_c['succeeded'])}"


def test_any_facade_answers_get_result_from_the_shared_folder(cluster: Cluster, astronaut_bytes: bytes, tmp_path: Path) -> None:
    # a and c read the shared folder themselves; d has none, and its facade asks the storage worker.
    image = tmp_path / "astronaut.jpg"
    image.write_bytes(variant(astronaut_bytes, 30))
    key = hashlib.sha256(image.read_bytes()).hexdigest()
    code, [processed], err = cluster.client("--target", cluster.target("a"), str(image))
    assert code == 0 and processed["response"]["status"] == "Success", err[-3000:]
    # Redis forgets the result (as after RESULT_TTL): only the shared folder still has it.
    forget = "import sys, redis; print(redis.Redis.from_url(sys.argv[1]).delete(sys.argv[2]))"
    code, out, err = cluster.net.run("a", [sys.executable, "-c", forget, cluster.env["REDIS_URL"], f"{key}:result"], cluster.env, 60)
    assert (code, out.strip()) == (0, "1"), err
    for host in "acd":
        code, [fetched], err = cluster.client("--target", cluster.target(host), "--get", key)
        assert code == 0, err[-3000:]
        response = fetched["response"]
        assert response["cached"] and response["status"] == "Success"
        assert response["storage_response"]["json_path"] == f"{key}.json"
        assert response["faces"] == processed["response"]["faces"]
    read_back = re.findall(r"Task tasks\.storage\.read_result\[\S+\] succeeded", (cluster.logs / "c-storage.log").read_text())
    assert len(read_back) == 1  # d's facade asked the storage worker; a's and c's read the folder
    code, [unknown], _ = cluster.client("--target", cluster.target("d"), "--get", "0" * 64)
    assert code != 0 and unknown["error"].startswith("NOT_FOUND")
