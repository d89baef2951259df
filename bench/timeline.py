"""Where one request's time goes: the steps of a request at concurrency 1, from the log lines.

    .venv/bin/python bench/timeline.py       # prints a markdown table, appends it to docs/benchmarks.md

Starts ``python -m grpc_facade.stack serve --log-dir`` (no Flower), sends ``--requests``
different copies of a photo one after another, and places each stage's work on the
clock with the stages' own log lines (``[key] landmark: Success, ..., Runtime: 0.158``
ends at the line's time and began ``Runtime`` seconds before). Between the client's
send and receive, the rest is the service's plumbing: the facade, task hand-offs
through Redis, the chord's callback. Timestamps have millisecond resolution.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import publish  # noqa: E402
from bench.speed import distinct_copies, machine, photo_options, private_stack, resized  # noqa: E402
from proto import image_processing_pb2 as pb  # noqa: E402
from proto import image_processing_pb2_grpc as pb_grpc  # noqa: E402

STAGE_LINE = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*\[(?P<key>[0-9a-f]{12})\] (?P<stage>landmark|agegender|storage): "
    r".*Runtime: (?P<runtime>[0-9.]+)"
)
STEPS = (
    "client to detection start",
    "detection (landmark stage)",
    "landmark end to age/gender start",
    "age/gender stage",
    "age/gender end to storage start",
    "storage stage",
    "storage end to client",
    "total",
)


def stage_spans(log_dir: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(key prefix, stage) -> (start, end) in epoch seconds, from every log file."""
    spans = {}
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if match := STAGE_LINE.search(line):
                end = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                spans[match["key"], match["stage"]] = (end - float(match["runtime"]), end)
    return spans


def steps_of(key: str, sent: float, received: float, spans: dict[tuple[str, str], tuple[float, float]]) -> list[float]:
    """The durations of :data:`STEPS` for one request, in seconds."""
    (l_start, l_end), (a_start, a_end), (s_start, s_end) = (spans[key, s] for s in ("landmark", "agegender", "storage"))
    return [l_start - sent, l_end - l_start, a_start - l_end, a_end - a_start, s_start - a_end, s_end - s_start,
            received - s_end, received - sent]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/timeline.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16, help="requests, one at a time (default 16)")
    photo_options(parser)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line to print above the table (what changed)")
    args = parser.parse_args(argv)

    images = distinct_copies(resized(ROOT / "images" / args.photo, args.width), args.requests + 1)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    sent_at = []
    with private_stack(log_dir) as (_, target, _):
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.ImageInputStub(channel)
            stub.ProcessImage(pb.ImageRequest(image_data=images[0]), timeout=60)  # warm every process
            for data in images[1:]:
                sent = time.time()
                response = stub.ProcessImage(pb.ImageRequest(image_data=data), timeout=60)
                sent_at.append((response.redis_key[:12], sent, time.time()))
                time.sleep(0.1)
        time.sleep(0.5)  # the last log lines reach their files

    spans = stage_spans(log_dir)
    per_step = list(zip(*(steps_of(key, sent, received, spans) for key, sent, received in sent_at), strict=True))
    lines = [
        f"### {date.today().isoformat()}: {args.note or 'bench/timeline.py'}",
        "",
        f"Machine: {machine()}. {args.requests} requests one at a time, {args.photo} at {args.width} px; "
        "from the client's clock and the stages' log lines.",
        "",
        "| step | median ms | min ms | max ms |",
        "|---|---|---|---|",
        *(f"| {name} | {statistics.median(values) * 1e3:.1f} | {min(values) * 1e3:.1f} | {max(values) * 1e3:.1f} |"
          for name, values in zip(STEPS, per_step, strict=True)),
        "",
    ]
    publish("\n".join(lines), append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
