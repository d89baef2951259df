"""Where the CPU goes: CPU time per image of each process of the stack, against in-process.

    .venv/bin/python bench/cpu.py            # prints a markdown table, appends it to docs/benchmarks.md

Starts ``python -m grpc_facade.stack serve`` (no Flower), sends ``--images`` different
copies of a photo at ``--concurrency``, and divides the CPU time (user + system) each
process of the stack used meanwhile by the number of images, summed per role: Redis,
the facade, each worker's main process and its pool processes. The two baselines of
``bench/baselines.py`` are then timed in this process (``time.process_time``) on the
same images. On a machine whose cores are all busy, the ratio of the service's total to
the lean pipeline's bounds the throughput ratio of ``bench/speed.py``. Runs alternate between the service and in-process ``--runs`` times.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_by_role, cpu_per_item  # noqa: E402
from bench.report import publish  # noqa: E402
from bench import baselines  # noqa: E402
from bench.speed import KINDS, distinct_copies, end_to_end, machine, photo_options, private_stack, resized  # noqa: E402
from tasks import QUEUES  # noqa: E402

ROLES = ("redis", "facade", *(f"{queue} {part}" for queue in QUEUES for part in ("main", "pool")))


def service_cpu(launcher: int, target: str, images: list[bytes], concurrency: int) -> dict[str, float]:
    """CPU seconds per image and role while the stack answers ``images``."""
    before = cpu_by_role(launcher)
    end_to_end(target, images, concurrency)
    after = cpu_by_role(launcher)
    return cpu_per_item(before, after, ROLES, len(images))


def in_process_cpu(kind: str, images: list[bytes]) -> float:
    """CPU seconds per image of a baseline (``bench/baselines.py``) in this process."""
    baselines.run(kind, images[0])  # load and warm up
    started = time.process_time()
    for data in images:
        baselines.run(kind, data)
    return (time.process_time() - started) / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/cpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="images per run (default 48)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    photo_options(parser)
    parser.add_argument("--runs", type=int, default=2, help="runs, service and in-process alternately (default 2)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line to print above the table (what changed)")
    args = parser.parse_args(argv)

    copies = iter(distinct_copies(resized(ROOT / "images" / args.photo, args.width), args.images * args.runs))
    rows = []
    with private_stack() as (process, target, _):
        for run in tqdm(range(1, args.runs + 1), desc="runs", unit="run"):
            images = [next(copies) for _ in range(args.images)]
            service = service_cpu(process.pid, target, images, args.concurrency)
            rows.append((run, service, {kind: in_process_cpu(kind, images) for kind in KINDS}))

    lines = [
        f"### {date.today().isoformat()}: {args.note or 'bench/cpu.py'}",
        "",
        f"Machine: {machine()}. {args.images} different copies of {args.photo} at {args.width} px, "
        f"{args.concurrency} in flight; CPU ms per image (user + system).",
        "",
        "| run | " + " | ".join(ROLES) + " | service total | plain script | lean pipeline | service / lean |",
        "|---" * (len(ROLES) + 5) + "|",
    ]
    for run, service, in_process in rows:
        total = sum(service.values())
        cells = " | ".join(f"{service[role] * 1e3:.1f}" for role in ROLES)
        lines.append(f"| {run} | {cells} | {total * 1e3:.1f} | {in_process['plain'] * 1e3:.1f} | "
                     f"{in_process['lean'] * 1e3:.1f} | {total / in_process['lean']:.2f} |")
    publish("\n".join(lines) + "\n", append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
