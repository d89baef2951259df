"""Load test: many requests with a mix of images, then check that nothing was lost.

    .venv/bin/python bench/load.py --requests 500 --concurrency 16

Sends to a running facade (``./run.sh serve``) on loopback. The mix: every image in
IMAGES_DIR plus re-encoded copies (new bytes, so new keys) and repeats (answered from
stored results). Afterwards it checks that every request got an answer, that every
success has its JSON and JPEG in OUTPUT_DIR and its merged result in Redis, that every queue is
empty and that no worker process was replaced. Prints the counts; exits 1 on any miss.
Bounded by ``--requests`` and ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import grpc
import redis
from celery import Celery
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grpc_facade import channels  # noqa: E402
from grpc_facade.client import expand  # noqa: E402
from proto import image_processing_pb2 as pb  # noqa: E402
from proto import image_processing_pb2_grpc as pb_grpc  # noqa: E402
from tasks import QUEUES  # noqa: E402
from tasks.shared import settings  # noqa: E402
from tasks.shared.output_files import output_paths  # noqa: E402
from tasks.shared.redis_store import stage_key  # noqa: E402



def reencoded(data: bytes, quality: int, comment: str = "") -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, comment=comment.encode())
    return buffer.getvalue()


def image_mix(images_dir: Path, requests: int, distinct: int) -> list[bytes]:
    """``requests`` payloads cycling over ``distinct`` different images."""
    originals = [path.read_bytes() for path in expand([str(images_dir)])]
    if not originals:
        raise SystemExit(f"no images in {images_dir}")
    # The comment keeps the bytes apart however many copies are asked for; the quality varies the pixels a little.
    pool = [reencoded(originals[i % len(originals)], 95 - (i // len(originals)) % 40, str(i)) for i in range(distinct)]
    return [pool[i % len(pool)] for i in range(requests)]


def worker_processes(app: Celery) -> dict[str, list[int]]:
    stats = app.control.inspect(timeout=3).stats() or {}
    return {name: sorted(s["pool"]["processes"]) for name, s in stats.items()}


def main(argv: list[str] | None = None) -> int:
    config = settings.load()
    parser = argparse.ArgumentParser(prog="bench/load.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=f"localhost:{config.grpc_port}", help="facade address (loopback)")
    parser.add_argument("--requests", type=int, default=500, help="requests to send (default 500)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--distinct", type=int, default=100, help="different images among them (default 100)")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop sending after this long (default 900)")
    parser.add_argument("--images", type=Path, default=config.images_dir, help="source images (default IMAGES_DIR)")
    args = parser.parse_args(argv)

    host = args.target.rsplit(":", 1)[0].strip("[]")
    if host not in {"localhost", "127.0.0.1", "::1"}:
        parser.error("the load test only targets this machine (localhost)")
    payloads = image_mix(args.images, args.requests, min(args.distinct, args.requests))
    app = Celery(broker=config.redis_url, backend=config.redis_url)
    before = worker_processes(app)
    codes: collections.Counter[str] = collections.Counter()
    successes: set[str] = set()
    deadline = time.monotonic() + args.max_seconds
    started = time.perf_counter()
    with channels.channel(args.target, config) as channel, ThreadPoolExecutor(args.concurrency) as pool:
        stub = pb_grpc.ImageInputStub(channel)

        def send(data: bytes) -> tuple[str, str]:
            if time.monotonic() > deadline:
                return "NOT_SENT", ""
            try:
                response = stub.ProcessImage(pb.ImageRequest(image_data=data), timeout=120)
            except grpc.RpcError as error:
                return error.code().name, ""
            return ("OK" if response.status == "Success" else "OK_FAILURE"), response.redis_key

        futures = [pool.submit(send, data) for data in payloads]
        for future in tqdm(as_completed(futures), total=len(futures), unit="req", desc="load"):
            code, key = future.result()
            codes[code] += 1
            if code == "OK":
                successes.add(key)
    elapsed = time.perf_counter() - started

    store = redis.Redis.from_url(config.redis_url)
    missing_files = [k for k in successes if not all(p.is_file() for p in output_paths(config.output_dir, k))]
    missing_keys = [k for k in successes if not store.exists(stage_key(k, "result"))]
    queued = {queue: store.llen(queue) for queue in QUEUES}
    after = worker_processes(app)

    rows = [
        ("requests sent", sum(codes.values()) - codes["NOT_SENT"]),
        *((f"answered {code}", count) for code, count in sorted(codes.items()) if code != "NOT_SENT"),
        ("not sent (time bound)", codes["NOT_SENT"]),
        ("distinct images succeeded", len(successes)),
        ("successes missing JSON or JPEG", len(missing_files)),
        ("successes missing their Redis result", len(missing_keys)),
        ("messages left in queues", sum(queued.values())),
        ("worker processes replaced", sum(len(set(before.get(w, [])) - set(after.get(w, []))) for w in before)),
        ("wall time, s", f"{elapsed:.1f}"),
        ("requests per second", f"{(sum(codes.values()) - codes['NOT_SENT']) / elapsed:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    ok = (
        codes["OK"] == args.requests
        and not missing_files
        and not missing_keys
        and not any(queued.values())
        and before == after
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
