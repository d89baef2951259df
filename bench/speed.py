"""Speed and memory: the service through gRPC against two in-process baselines, in one run.

    .venv/bin/python bench/speed.py            # prints a markdown table, appends it to docs/benchmarks.md

The baselines (``bench/baselines.py``) call the same networks in-process: the plain
script a user would write with the two wheels, and the lean limit of those networks.
For a one-face photo and the six-face t1.jpg, each about 640 px and 1920 px wide, every
request a different copy (nothing is answered from a stored result), it measures:

- latency, image by image: each image through the plain script, then the lean
  pipeline, then the same bytes through the service at concurrency 1, so that all
  three see the same seconds of this shared machine (p50 of each);
- throughput, back to back: the service at concurrency 8 over ``--throughput-requests``
  images, and each baseline over as many with one process per core; the order rotates
  from round to round;
- cold start of ``python -m grpc_facade.stack serve`` to the first answered request, and
  each worker's memory (main + pool processes) after warm-up and after all rounds: PSS,
  which splits the pages they share, and the plain sum of their RSS.

Each of ``--rounds`` rounds gives its own ratios; the table shows their medians and,
in brackets, every round's. Targets (issue 12): c=8 img/s at least 1.3 x the plain
script's and 0.75 x the lean pipeline's; c=1 p50 at most 0.8 x the plain script's serial time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import grpc
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpc_facade.stack import free_port, health_serving  # noqa: E402
from proto import image_processing_pb2 as pb  # noqa: E402
from proto import image_processing_pb2_grpc as pb_grpc  # noqa: E402
from bench import baselines  # noqa: E402
from bench.processes import stack_processes  # noqa: E402
from bench.report import publish  # noqa: E402
from tasks import QUEUES  # noqa: E402
from tasks.shared import settings  # noqa: E402

CONCURRENCY = 8  # requests in flight for the service's throughput
# A pause after each timed call of the paired latency: the plain script's onnxruntime
# threads spin on for a while after a run and would slow whatever is timed next.
SETTLE = 0.2


def photo_options(parser: argparse.ArgumentParser, width: int = 640) -> None:
    """``--photo`` and ``--width``: the photo whose re-encoded copies a script sends."""
    parser.add_argument("--photo", default="t1.jpg", help="a photo in images/ (default t1.jpg)")
    parser.add_argument("--width", type=int, default=width, help=f"its width in pixels (default {width})")


def resized(path: Path, width: int, quality: int = 92) -> bytes:
    with Image.open(path) as image:
        image = image.convert("RGB")
        height = round(image.height * width / image.width)
        buffer = io.BytesIO()
        image.resize((width, height), Image.Resampling.LANCZOS).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def distinct_copies(data: bytes, count: int) -> list[bytes]:
    """``count`` different byte strings of the same picture (JPEG quality 95, 94, ...)."""
    copies = []
    with Image.open(io.BytesIO(data)) as image:
        for i in range(count):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=95 - i % 40, comment=str(i).encode())
            copies.append(buffer.getvalue())
    return copies


# --- the baselines, in this process and in one process per core ------------------------

KINDS = ("plain", "lean")


def _warm(kind: str) -> None:
    baselines.run(kind, resized(ROOT / "images" / "t1.jpg", 320))


def baseline_pool(kind: str, cores: int) -> ProcessPoolExecutor:
    """``cores`` processes, each with ``kind``'s models loaded and warmed up."""
    pool = ProcessPoolExecutor(cores, initializer=_warm, initargs=(kind,))
    list(pool.map(time.sleep, [0.2] * cores))  # every process started (and warmed up)
    return pool


def baseline_throughput(pool: ProcessPoolExecutor, kind: str, images: list[bytes]) -> float:
    """Images per second of ``kind`` with ``pool``."""
    started = time.perf_counter()
    list(pool.map(baselines.run, [kind] * len(images), images))
    return len(images) / (time.perf_counter() - started)


# --- the service ------------------------------------------------------------------------

def start_stack(env: dict[str, str], log_dir: Path) -> tuple[subprocess.Popen, float]:
    """Start ``python -m grpc_facade.stack serve`` and return it with its cold start in s."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "grpc_facade.stack", "serve", "--no-flower", "--log-dir", str(log_dir)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    target = f"localhost:{env['GRPC_PORT']}"
    probe = resized(ROOT / "images" / "astronaut.jpg", 256)
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the stack exited with {process.returncode}; see {log_dir}")
        if health_serving(target):
            try:
                with grpc.insecure_channel(target) as channel:
                    pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=probe), timeout=30)
                return process, time.perf_counter() - started
            except grpc.RpcError:
                pass
        time.sleep(0.05)


@contextlib.contextmanager
def private_stack(log_dir: Path | None = None, redis_url: str = "") -> Iterator[tuple[subprocess.Popen, str, float]]:
    """A stack of its own (free ports, private Redis at ``redis_url`` or a free port,
    temporary output), stopped on exit.

    Yields the launcher process, the facade's address and the cold start in seconds.
    """
    redis_url = redis_url or f"redis://127.0.0.1:{free_port()}/0"
    env = dict(os.environ, REDIS_URL=redis_url, GRPC_PORT=str(free_port()),
               METRICS_PORT=str(free_port()), OUTPUT_DIR=tempfile.mkdtemp(prefix="bench-output-"), PYTHONPATH=str(ROOT))
    process, cold_start = start_stack(env, log_dir or Path(tempfile.mkdtemp(prefix="bench-logs-")))
    try:
        yield process, f"localhost:{env['GRPC_PORT']}", cold_start
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def worker_memory_mb(launcher_pid: int) -> dict[str, tuple[float, float]]:
    """Memory per queue worker, its main process plus its pool: (PSS, RSS sum) in MB."""
    memory: dict[str, tuple[float, float]] = {}
    for process in stack_processes(launcher_pid):
        queue = process.role.split()[0]
        if queue in QUEUES:
            pss, rss = memory.get(queue, (0.0, 0.0))
            memory[queue] = (pss + process.pss_mb, rss + process.rss_mb)
    return memory


def largest_process(launcher_pid: int) -> tuple[str, float]:
    """The role and RSS in MB of the stack's largest worker process."""
    workers = [process for process in stack_processes(launcher_pid) if process.role.split()[0] in QUEUES]
    largest = max(workers, key=lambda process: process.rss_mb)
    return largest.role, largest.rss_mb


def memory_line(memory: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{queue} {pss:.0f} / {rss:.0f} MB" for queue, (pss, rss) in sorted(memory.items()))


def p50_p95(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed_request(stub: pb_grpc.ImageInputStub, data: bytes) -> float:
    """Seconds for one ``ProcessImage`` that must compute (not answer from a stored result)."""
    started = time.perf_counter()
    response = stub.ProcessImage(pb.ImageRequest(image_data=data), timeout=120)
    if response.status != "Success" or response.cached:
        raise RuntimeError(f"unexpected answer: {response.status}, cached={response.cached}")
    return time.perf_counter() - started


def end_to_end(target: str, images: list[bytes], concurrency: int) -> tuple[float, float, float]:
    """(p50 s, p95 s, images per second) for ``images`` sent ``concurrency`` at a time."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ImageInputStub(channel)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(lambda data: timed_request(stub, data), images))
        wall = time.perf_counter() - started
    return (*p50_p95(latencies), len(images) / wall)


def paired_latency(target: str, images: list[bytes]) -> dict[str, tuple[float, float]]:
    """Each image through the plain script, the lean pipeline and the service at
    concurrency 1, image by image, so that all three see the same seconds of this
    shared machine. Returns (p50 s, p95 s) per kind ("plain", "lean", "service")."""
    times: dict[str, list[float]] = {kind: [] for kind in (*KINDS, "service")}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ImageInputStub(channel)
        for data in images:
            for kind in KINDS:
                started = time.perf_counter()
                baselines.run(kind, data)
                times[kind].append(time.perf_counter() - started)
                time.sleep(SETTLE)
            times["service"].append(timed_request(stub, data))
            time.sleep(SETTLE)
    return {kind: p50_p95(seconds) for kind, seconds in times.items()}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal"))) / 1024**2
    return f"{os.cpu_count()} × {cpu}, {memory_gb:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


@dataclass
class Round:
    """One round of one photo: the baselines and the service measured side by side."""

    latency: dict[str, tuple[float, float]]  # kind -> (p50 s, p95 s) at concurrency 1 / serial
    throughput: dict[str, float]  # kind -> images per second (service at c=8, baselines 1 process per core)

    @property
    def ratios(self) -> tuple[float, float, float]:
        """(c=8 / plain, c=8 / lean, c=1 p50 / plain serial p50)."""
        service = self.throughput["service"]
        return (service / self.throughput["plain"], service / self.throughput["lean"],
                self.latency["service"][0] / self.latency["plain"][0])


def measure(target: str, pools: dict[str, ProcessPoolExecutor], images: Iterator[bytes],
            requests: int, throughput_requests: int, order: int) -> Round:
    """One round: paired latency over ``requests`` images, then the three throughputs over
    ``throughput_requests`` images each, starting with the ``order``-th of them."""
    latency = paired_latency(target, [next(images) for _ in range(requests)])
    throughput: dict[str, float] = {}
    kinds = ["service", *KINDS]
    for kind in kinds[order % 3:] + kinds[:order % 3]:
        batch = [next(images) for _ in range(throughput_requests)]
        throughput[kind] = (end_to_end(target, batch, CONCURRENCY)[2] if kind == "service"
                            else baseline_throughput(pools[kind], kind, batch))
    return Round(latency, throughput)


def median_row(name: str, rounds: list[Round]) -> str:
    """A table row: the median of every figure over the rounds, and the median ratios."""
    med = statistics.median
    cells = [f"{med(r.latency[k][0] for r in rounds) * 1e3:.0f}" for k in (*KINDS, "service")]
    cells.append(f"{med(r.latency['service'][1] for r in rounds) * 1e3:.0f}")
    cells += [f"{med(r.throughput[k] for r in rounds):.2f}" for k in (*KINDS, "service")]
    for index in range(3):
        each = ", ".join(f"{r.ratios[index]:.2f}" for r in rounds)
        cells.append(f"**{med(r.ratios[index] for r in rounds):.2f}** ({each})")
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12, help="images per paired latency measurement (default 12)")
    parser.add_argument("--throughput-requests", type=int, default=48,
                        help="images for each throughput figure (default 48)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per photo; medians shown (default 3)")
    parser.add_argument("--photos", default="", help="a subset of the photos, separated by semicolons (e.g. '6 faces, 640 px')")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line to print above the table (what changed)")
    args = parser.parse_args(argv)

    photos = {
        "1 face, 640 px": resized(ROOT / "images" / "astronaut.jpg", 640),
        "1 face, 1920 px": resized(ROOT / "images" / "astronaut.jpg", 1920),
        "6 faces, 640 px": resized(ROOT / "images" / "t1.jpg", 640),
        "6 faces, 1920 px": resized(ROOT / "images" / "t1.jpg", 1920),
    }
    if args.photos:
        photos = {name: photos[name] for name in args.photos.split(";")}
    per_round = args.requests + 3 * args.throughput_requests
    rows = []
    cores = os.cpu_count() or 1
    for kind in KINDS:
        _warm(kind)  # the paired latency runs them in this process
    with private_stack() as (process, target, cold_start):
        warm = worker_memory_mb(process.pid)
        pools = {kind: baseline_pool(kind, cores) for kind in KINDS}
        try:
            with tqdm(total=len(photos) * args.rounds, desc="rounds", unit="round") as bar:
                for name, data in photos.items():
                    images = iter(distinct_copies(data, per_round * args.rounds))
                    rounds = []
                    for index in range(args.rounds):
                        rounds.append(measure(target, pools, images, args.requests, args.throughput_requests, index))
                        bar.update()
                    rows.append(median_row(name, rounds))
        finally:
            for pool in pools.values():
                pool.shutdown()
        loaded = worker_memory_mb(process.pid)
        biggest, biggest_mb = largest_process(process.pid)

    config = settings.load()
    lines = [
        f"### {date.today().isoformat()}: {args.note or 'bench/speed.py'}",
        "",
        f"Machine: {machine()}. Medians of {args.rounds} rounds per photo; {args.requests} images per paired "
        f"latency figure, {args.throughput_requests} per throughput figure; settings: "
        f"DETECT_MAX_SIDE={config.detect_max_side}, ORT_THREADS={config.ort_threads}, "
        f"AGEGENDER_BF16={int(config.agegender_bf16)}, DETECT_BF16={int(config.detect_bf16)}, "
        + ", ".join(f"{queue.upper()}_CONCURRENCY={config.concurrency(queue)}" for queue in QUEUES)
        + ". Plain: the script a user would write with the two wheels; lean: the same networks called "
        "lean (bench/baselines.py). Latency: each image through plain, lean and the service at c=1 in turn; "
        "throughput: the service at c=8, each baseline with one process per core.",
        "",
        "| photo | plain serial p50 ms | lean serial p50 ms | c=1 p50 ms | c=1 p95 ms | plain img/s | lean img/s | "
        f"c={CONCURRENCY} img/s | c={CONCURRENCY} / plain (≥ 1.3) | c={CONCURRENCY} / lean (≥ 0.75) | c=1 p50 / plain serial (≤ 0.8) |",
        "|---" * 12 + "|",
        *rows,
        "",
        f"Cold start (`python -m grpc_facade.stack serve` to the first answer): {cold_start:.1f} s. "
        "Memory per worker, main + pool processes, PSS / RSS sum (RSS counts the pages they "
        f"share once per process): after warm-up {memory_line(warm)}; after the rounds {memory_line(loaded)}. "
        f"Largest worker process after the rounds: one {biggest} process, {biggest_mb:.0f} MB RSS.",
        "",
    ]
    publish("\n".join(lines), append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
