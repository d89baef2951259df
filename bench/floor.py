"""Celery's floor: what an empty run of the service's task graph costs, in time and CPU.

    .venv/bin/python bench/floor.py          # prints a markdown table, appends it to docs/benchmarks.md

Starts a private ``redis-server`` and three workers of ``bench/empty_chord.py`` (the
service's queues, concurrency, ``celeryconfig`` and task graph, tasks that do nothing),
then sends runs of that graph from this process, as the facade does (``apply_async``,
then ``get`` through the result store's pub/sub): one at a time for
the round trip, then ``--concurrency`` at a time for the CPU each process spends per
run. No gRPC, no image, no model: the service's overhead per image beyond this floor
is its own (compare ``bench/cpu.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_by_role, cpu_per_item  # noqa: E402
from bench.report import publish  # noqa: E402
from bench.speed import machine, p50_p95  # noqa: E402
from grpc_facade.stack import free_port  # noqa: E402
from grpc_facade.stack import redis_answers, redis_server_argv, wait_until  # noqa: E402
from tasks import QUEUES  # noqa: E402
from tasks.shared import graph, settings  # noqa: E402

ROLES = ("client", "redis", *(f"{queue} {part}" for queue in QUEUES for part in ("main", "pool")))


def start(log_dir: Path, pool: str = "prefork") -> list[subprocess.Popen]:
    """A private Redis (``REDIS_URL`` is pointed at it) and one empty-task worker per queue."""
    port = free_port()
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    config = settings.load()
    redis = subprocess.Popen(redis_server_argv(port, log_dir), stdout=subprocess.DEVNULL)
    wait_until(lambda: redis_answers(config.redis_url), 15, "redis-server", redis)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.empty_chord", "worker", "-Q", queue,
             "-n", f"{queue}-floor@%h", "--concurrency", str(config.concurrency(queue)),
             "--pool", pool, "--loglevel", "WARNING", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=(log_dir / f"{queue}.log").open("wb"), stderr=subprocess.STDOUT,
        )
        for queue in QUEUES
    ]
    return [redis, *workers]


def wait_for_workers(timeout: float = 60) -> None:
    from bench.empty_chord import app

    def all_consumed() -> bool:
        replies = app.control.inspect(timeout=0.5).active_queues() or {}
        return set(QUEUES) <= {queue["name"] for queues in replies.values() for queue in queues}

    wait_until(all_consumed, timeout, "the empty-task workers")


def round_trips(count: int, concurrency: int) -> tuple[list[float], float]:
    """Seconds per run of the graph, sent ``concurrency`` at a time, and runs per second."""
    from bench.empty_chord import send

    def one(index: int) -> float:
        started = time.perf_counter()
        result = send(f"chord-{index}").get(timeout=60, follow_parents=False)
        if result["stages"] != list(graph.PER_FACE):
            raise RuntimeError(f"unexpected callback result: {result}")
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(one, range(count)))
    return times, count / (time.perf_counter() - started)


def cpu_per_chord(count: int, concurrency: int) -> tuple[dict[str, float], float, list[float]]:
    """CPU seconds per run and role, runs per second, and the round trips."""
    before, client_before = cpu_by_role(os.getpid()), time.process_time()
    times, rate = round_trips(count, concurrency)
    after, client = cpu_by_role(os.getpid()), time.process_time() - client_before
    per_role = cpu_per_item(before, after, ROLES, count)
    per_role["client"] = client / count
    return per_role, rate, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/floor.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chords", type=int, default=300, help="runs of the graph per measurement (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight for the CPU figures (default 8)")
    parser.add_argument("--pool", default="prefork", choices=("prefork", "solo", "threads"),
                        help="the workers' execution pool (default prefork, as the service's)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = parser.parse_args(argv)

    log_dir = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    children = start(log_dir, args.pool)
    rows = []
    try:
        wait_for_workers()
        round_trips(20, 1)  # connections, first messages
        for concurrency in tqdm((1, args.concurrency), desc="concurrency", unit="level"):
            rows.append((concurrency, *cpu_per_chord(args.chords, concurrency)))
    finally:
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()

    lines = [
        f"### {date.today().isoformat()}: an empty run of the service's task graph",
        "",
        f"Machine: {machine()}. {args.chords} runs of the graph per row, sent from one process through "
        f"`apply_async` and `get` (no gRPC, no image, no model); worker concurrency as the "
        f"service's; CPU ms per run (user + system).",
        "",
        "| in flight | p50 ms | p95 ms | runs/s | " + " | ".join(ROLES) + " | total CPU |",
        "|---" * (len(ROLES) + 5) + "|",
    ]
    for concurrency, per_role, rate, times in rows:
        p50, p95 = p50_p95(times)
        cells = " | ".join(f"{per_role[role] * 1e3:.1f}" for role in ROLES)
        lines.append(f"| {concurrency} | {p50 * 1e3:.1f} | {p95 * 1e3:.1f} | {rate:.0f} | "
                     f"{cells} | {sum(per_role.values()) * 1e3:.1f} |")
    publish("\n".join(lines) + "\n", append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
