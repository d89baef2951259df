"""Speed and memory: in-process models versus the whole service, in one run.

    .venv/bin/python bench/speed.py            # prints a markdown table, appends it to docs/benchmarks.md

Measures, on this machine:
- the in-process baseline: decode + face detection + age/gender with the same model code,
  no Celery/Redis/gRPC, in one process (serial) and in one process per core (throughput);
  the serial time image by image between the service's requests and, for comparison,
  one image after another; and, for comparison only, serial with the models a lone task
  uses (``IDLE_THREADS`` cores: the service's configuration at concurrency 1);
- end to end through the gRPC facade at concurrency 1, 2, 4 and 8 (p50/p95 latency and
  images per second), every request a different image so that nothing is answered from
  a stored result;
- for a one-face photo and the six-face t1.jpg, each about 640 px and 1920 px wide;
- cold start of ``python -m grpc_facade.stack serve`` to the first answered request, and
  each worker's memory (main + pool processes) after warm-up and again after all the
  rounds: PSS, which splits the pages they share, and the plain sum of their RSS;
- the ratios: end-to-end p50 at concurrency 1 / in-process serial time, and end-to-end
  throughput at concurrency 8 / in-process throughput with one process per core.

The machine these run on is shared and its speed drifts from minute to minute, so the
baseline and the service are measured alternately: the serial time and concurrency 1
image by image (each image in-process, then the same bytes through the service), the
two throughputs back to back; photo by photo, in ``--rounds`` rounds. Each round gives
its own ratios, and the table shows the medians. The two
throughput figures are measured over ``--throughput-requests`` images, enough for the
start and the end of a batch (when fewer than 8 requests are in flight) to matter little.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import signal
import socket
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

from grpc_facade.stack import health_serving  # noqa: E402
from proto import image_processing_pb2 as pb  # noqa: E402
from proto import image_processing_pb2_grpc as pb_grpc  # noqa: E402
from bench.processes import stack_processes  # noqa: E402
from bench.report import publish  # noqa: E402
from tasks import QUEUES, settings  # noqa: E402

CONCURRENCY = (1, 2, 4, 8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


# --- in-process baseline: the models the workers use, called directly -----------------

def _in_process(data: bytes, alone: bool = False) -> int:
    """Decode, detect and estimate with the models of a busy worker (``alone``: of a lone task)."""
    from tasks import models
    from tasks.imaging import decode_image

    image = decode_image(data, 10**9)
    faces = models.detector_for(alone).detect(image)
    models.estimator_for(alone).estimate(image, faces)
    return len(faces)


def in_process_serial(images: list[bytes], alone: bool = False) -> float:
    """Median seconds per image, one image after another in this process."""
    _in_process(images[0], alone)  # load and warm up
    times = []
    for data in images:
        started = time.perf_counter()
        _in_process(data, alone)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_process_throughput(pool: ProcessPoolExecutor, images: list[bytes]) -> float:
    """Images per second with ``pool`` (one warm process per core)."""
    started = time.perf_counter()
    list(pool.map(_in_process, images))
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
def private_stack(log_dir: Path | None = None) -> Iterator[tuple[subprocess.Popen, str, float]]:
    """A stack of its own (free ports, private Redis, temporary output), stopped on exit.

    Yields the launcher process, the facade's address and the cold start in seconds.
    """
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", GRPC_PORT=str(free_port()),
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


def paired_latency(target: str, images: list[bytes]) -> tuple[float, tuple[float, float, float]]:
    """Each image in this process, then the same bytes through the service at concurrency 1,
    image by image, so that both see the same seconds of this shared machine.

    Returns the in-process median seconds per image and the service's (p50 s, p95 s,
    images per second).
    """
    _in_process(images[0])  # load and warm up
    local: list[float] = []
    remote: list[float] = []
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ImageInputStub(channel)
        for data in images:
            started = time.perf_counter()
            _in_process(data)
            local.append(time.perf_counter() - started)
            remote.append(timed_request(stub, data))
    return statistics.median(local), (*p50_p95(remote), len(remote) / sum(remote))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal"))) / 1024**2
    return f"{os.cpu_count()} × {cpu}, {memory_gb:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


@dataclass
class Round:
    """One round of one photo: baseline and service measured back to back."""

    serial: float  # in-process seconds per image, each image right before the service's request
    back_to_back: float  # in-process seconds per image, one image after another
    serial_alone: float  # the same with a lone task's models (IDLE_THREADS cores)
    per_core: float  # in-process images per second, one process per core
    cells: dict[int, tuple[float, float, float]]  # concurrency -> (p50 s, p95 s, img/s)

    @property
    def latency_ratio(self) -> float:
        return self.cells[1][0] / self.serial

    @property
    def latency_ratio_back_to_back(self) -> float:
        return self.cells[1][0] / self.back_to_back

    @property
    def throughput_ratio(self) -> float:
        return self.cells[max(CONCURRENCY)][2] / self.per_core


def measure(
    target: str, pool: ProcessPoolExecutor, images: Iterator[bytes], requests: int, throughput_requests: int
) -> Round:
    """One round: in-process serial back to back; in-process serial and the service at
    concurrency 1, image by image; the lone-task models in-process; the service at the
    other concurrencies; in-process throughput. The highest concurrency runs
    ``throughput_requests`` requests, right before the in-process throughput it is
    compared with."""

    def take(count: int) -> list[bytes]:
        return [next(images) for _ in range(count)]

    back_to_back = in_process_serial(take(requests))
    serial, one_at_a_time = paired_latency(target, take(requests))
    serial_alone = in_process_serial(take(requests), alone=True)
    cells = {1: one_at_a_time}
    for c in CONCURRENCY[1:]:
        cells[c] = end_to_end(target, take(throughput_requests if c == max(CONCURRENCY) else requests), c)
    per_core = in_process_throughput(pool, take(throughput_requests))
    return Round(serial, back_to_back, serial_alone, per_core, cells)


def median_row(name: str, rounds: list[Round]) -> str:
    """A table row: the median of every figure over the rounds, and the median ratios."""
    med = statistics.median
    serial, per_core = med(r.serial for r in rounds), med(r.per_core for r in rounds)
    serial_alone, back_to_back = med(r.serial_alone for r in rounds), med(r.back_to_back for r in rounds)
    cells = " | ".join(
        f"{med(r.cells[c][0] for r in rounds) * 1e3:.0f} | {med(r.cells[c][1] for r in rounds) * 1e3:.0f} | "
        f"{med(r.cells[c][2] for r in rounds):.2f}"
        for c in CONCURRENCY
    )
    latency = ", ".join(f"{r.latency_ratio:.2f}" for r in rounds)
    latency_back_to_back = ", ".join(f"{r.latency_ratio_back_to_back:.2f}" for r in rounds)
    throughput = ", ".join(f"{r.throughput_ratio:.2f}" for r in rounds)
    return (
        f"| {name} | {serial * 1e3:.0f} | {back_to_back * 1e3:.0f} | {serial_alone * 1e3:.0f} | {per_core:.2f} | {cells} | "
        f"**{med(r.latency_ratio for r in rounds):.2f}** ({latency}) | "
        f"{med(r.latency_ratio_back_to_back for r in rounds):.2f} ({latency_back_to_back}) | "
        f"**{med(r.throughput_ratio for r in rounds):.2f}** ({throughput}) |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per latency cell (default 16)")
    parser.add_argument(
        "--throughput-requests", type=int, default=48,
        help=f"images for the two throughput figures: c={max(CONCURRENCY)} and in-process (default 48)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per photo; medians shown (default 3)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line to print above the table (what changed)")
    args = parser.parse_args(argv)

    photos = {
        "1 face, 640 px": resized(ROOT / "images" / "astronaut.jpg", 640),
        "1 face, 1920 px": resized(ROOT / "images" / "astronaut.jpg", 1920),
        "6 faces, 640 px": resized(ROOT / "images" / "t1.jpg", 640),
        "6 faces, 1920 px": resized(ROOT / "images" / "t1.jpg", 1920),
    }
    per_round = args.requests * (len(CONCURRENCY) + 1) + 2 * args.throughput_requests
    rows = []
    with private_stack() as (process, target, cold_start):
        warm = worker_memory_mb(process.pid)
        cores = os.cpu_count() or 1
        with ProcessPoolExecutor(cores) as pool, tqdm(total=len(photos) * args.rounds, desc="rounds", unit="round") as bar:
            for name, data in photos.items():
                images = iter(distinct_copies(data, per_round * args.rounds))
                list(pool.map(_in_process, [data] * cores))  # load the models in every process
                rounds = []
                for _ in range(args.rounds):
                    rounds.append(measure(target, pool, images, args.requests, args.throughput_requests))
                    bar.update()
                rows.append(median_row(name, rounds))
        loaded = worker_memory_mb(process.pid)

    config = settings.load()
    lines = [
        f"### {date.today().isoformat()}: {args.note or 'bench/speed.py'}",
        "",
        f"Machine: {machine()}. Medians of {args.rounds} alternating rounds per photo; {args.requests} "
        f"requests per latency cell, {args.throughput_requests} for each throughput figure; settings: "
        f"DETECT_MAX_SIDE={config.detect_max_side}, ORT_THREADS={config.ort_threads}, IDLE_THREADS={config.idle_threads}, "
        + ", ".join(f"{queue.upper()}_CONCURRENCY={config.concurrency(queue)}" for queue in QUEUES)
        + ". In-process serial: each image right before the same bytes go through the service "
        "at concurrency 1 (the ratio's baseline: both see the same seconds of this drifting "
        "machine), and, for comparison, one image after another. The ratio columns give the median "
        "and, in brackets, each round's own ratio.",
        "",
        f"| photo | in-process serial ms | in-process serial ms, back to back | in-process serial ms, {config.idle_threads} cores | "
        "in-process img/s (1 proc/core) | "
        + " | ".join(f"c={c} p50 ms | c={c} p95 ms | c={c} img/s" for c in CONCURRENCY)
        + f" | p50 c=1 / serial | p50 c=1 / back-to-back serial | img/s c={max(CONCURRENCY)} / in-process |",
        "|---" * (8 + 3 * len(CONCURRENCY)) + "|",
        *rows,
        "",
        f"Cold start (`python -m grpc_facade.stack serve` to the first answer): {cold_start:.1f} s. "
        "Memory per worker, main + pool processes, PSS / RSS sum (RSS counts the pages they "
        f"share once per process): after warm-up {memory_line(warm)}; after the rounds {memory_line(loaded)}.",
        "",
    ]
    publish("\n".join(lines), append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
