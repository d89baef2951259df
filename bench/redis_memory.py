"""Redis memory per request: what each answered image leaves in Redis, and for how long.

    .venv/bin/python bench/redis_memory.py --images 48 --width 1920

Starts a stack of its own (private Redis), sends different copies of a photo, then reads
every key they left: its kind, its size (``MEMORY USAGE``) and its expiry. Prints, per
kind, the bytes each request leaves and what Redis holds for every image per second
sustained (bytes times expiry), the figure to size Redis by. The stack reads the same
environment as the service, so ``AFTER_RUN_TTL=3600 bench/redis_memory.py`` shows the
same requests with the image kept for an hour.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from datetime import date
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import publish  # noqa: E402
from bench.speed import distinct_copies, end_to_end, photo_options, private_stack, resized  # noqa: E402
from grpc_facade.stack import free_port  # noqa: E402
from tasks.shared import redis_store, settings  # noqa: E402

SECTION = "Redis memory per request (`bench/redis_memory.py`)"
_KEY = re.compile(r"([0-9a-f]{64})(?::(\w+))?")


def kind(key: str) -> str | None:
    """What a key holds: ``image``, a stage or run suffix, ``Celery task result``, the
    kept results' index; None for the broker's own keys (queues, bindings), which do not
    grow with requests."""
    if key.startswith("celery-task-meta-"):
        return "Celery task result"
    if key == redis_store.KEPT_RESULTS:
        return "kept results' index"
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return match[2] or "image"


def survey(client: redis.Redis, result_ttl: int) -> dict[str, tuple[int, int, int]]:
    """Per kind: (keys, bytes in all, longest expiry left in seconds). The kept results'
    index has no expiry of its own: its entries leave ``result_ttl`` after their result."""
    keys: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    expiry: dict[str, int] = {}
    for raw in client.scan_iter(count=1000):
        name = kind(raw.decode())
        if name is not None:
            keys[name] += 1
            size[name] += client.memory_usage(raw) or 0
            ttl = result_ttl if raw.decode() == redis_store.KEPT_RESULTS else client.ttl(raw)
            expiry[name] = max(expiry.get(name, 0), ttl)
    return {name: (keys[name], size[name], expiry[name]) for name in keys}


def table(kinds: dict[str, tuple[int, int, int]], requests: int, note: str) -> str:
    config = settings.load()
    rows = []
    total = 0.0
    for name, (keys, size, expiry) in sorted(kinds.items(), key=lambda item: -item[1][1]):
        held = size / requests * max(expiry, 0) / 1e6  # MB per image per second sustained
        total += held
        rows.append(f"| {name} | {keys / requests:.1f} | {size / requests / 1024:.1f} | {expiry} | {held:,.1f} |")
    return "\n".join([
        f"### {date.today().isoformat()}: Redis memory per request{': ' + note if note else ''}",
        "",
        f"{requests} different copies (and the launcher's one probe), then every key read at once; IMAGE_TTL={config.image_ttl}, "
        f"AFTER_RUN_TTL={config.after_run_ttl}, RESULT_TTL={config.result_ttl}. \"Held\": what Redis "
        "keeps for each image per second sustained (KiB per request times the expiry).",
        "",
        "| kind | keys per request | KiB per request | expiry, s | held per img/s, MB |",
        "|---|---|---|---|---|",
        *rows,
        f"| all | | | | {total:,.1f} |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/redis_memory.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="requests, each a different copy (default 48)")
    photo_options(parser, width=1920)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--append", action="store_true", help="also append the table to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line for the heading (what changed)")
    args = parser.parse_args(argv)
    images = distinct_copies(resized(ROOT / "images" / args.photo, args.width), args.images)
    url = f"redis://127.0.0.1:{free_port()}/0"
    with private_stack(redis_url=url) as (_, target, _cold):
        end_to_end(target, images, args.concurrency)
        kinds = survey(redis.Redis.from_url(url), settings.load().result_ttl)
    note = args.note or f"{args.photo} at {args.width} px"
    publish(table(kinds, args.images, note), args.append, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
