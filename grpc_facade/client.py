"""Command-line client: send images to the facade and report what came back.

    python -m grpc_facade.client images/ photo.jpg 'more/*.png' --concurrency 4
    python -m grpc_facade.client --get 47f682e945b659f9...   # a stored result, by key

Exits 1 when any image failed (bad input, a failed stage, or no answer).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from grpc_facade import channels
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared import logs, settings

log = logging.getLogger("client")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Outcome:
    path: Path  # the file sent, or the key asked for with --get
    response: pb.CombinedResponse | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.status == "Success"


def expand(inputs: Iterable[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in the order given."""
    paths: list[Path] = []
    for item in inputs:
        matches = [Path(m) for m in sorted(glob.glob(item))] or [Path(item)]
        for match in matches:
            if match.is_dir():
                paths += sorted(p for p in match.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                paths.append(match)
    return paths


def process_file(
    stub: pb_grpc.ImageInputStub, path: Path, timeout: float, recompute: bool = False, annotate: bool = False
) -> Outcome:
    """Send one file to ``ProcessImage``; an RPC error becomes the outcome's ``error``."""
    try:
        request = pb.ImageRequest(image_data=path.read_bytes(), recompute=recompute, annotate=annotate)
        response = stub.ProcessImage(request, timeout=timeout)
    except grpc.RpcError as error:
        return Outcome(path, error=f"{error.code().name}: {error.details()}")
    except OSError as error:
        return Outcome(path, error=f"cannot read: {error}")
    return Outcome(path, response)


def get_result(stub: pb_grpc.ImageInputStub, key: str, timeout: float) -> Outcome:
    """Fetch a stored result with ``GetResult``; nothing is recomputed."""
    try:
        return Outcome(Path(key), stub.GetResult(pb.ResultRequest(redis_key=key), timeout=timeout))
    except grpc.RpcError as error:
        return Outcome(Path(key), error=f"{error.code().name}: {error.details()}")


def log_outcome(outcome: Outcome) -> None:
    """The per-image log lines of the service's original client."""
    if outcome.response is None:
        log.error("Processed %s: Failure (%s)", outcome.path.name, outcome.error)
        return
    r = outcome.response
    log.info("Processed %s: %s", outcome.path.name, r.status)
    log.info("Landmark Detection: %s, Runtime: %s", r.landmark_response.status, r.landmark_response.runtime)
    log.info("Age Gender Estimation: %s, Runtime: %s", r.age_gender_response.status, r.age_gender_response.runtime)
    for stage in (r.landmark_response, r.age_gender_response, r.storage_response):
        if stage.error:
            log.error("  %s", stage.error)


def summary_table(outcomes: list[Outcome]) -> str:
    """A plain-text table: image, status, faces, ages, genders, stage runtimes, output."""
    header = ("image", "status", "faces", "ages", "genders", "landmark s", "agegender s", "output")
    rows = [header]
    for o in outcomes:
        r = o.response
        if r is None:
            rows.append((o.path.name, "Failure", "-", "-", "-", "-", "-", o.error))
            continue
        rows.append(
            (
                o.path.name,
                r.status,
                str(len(r.faces)),
                ",".join(f"{f.age:.0f}" for f in r.faces if f.gender),
                ",".join(f.gender[0] for f in r.faces if f.gender),
                f"{r.landmark_response.runtime:.3f}",
                f"{r.age_gender_response.runtime:.3f}",
                r.storage_response.json_path or r.storage_response.error,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def run(
    paths: list[Path],
    target: str,
    concurrency: int,
    timeout: float,
    progress: bool = True,
    recompute: bool = False,
    keys: list[str] | None = None,
    annotate: bool = False,
) -> list[Outcome]:
    """Process ``paths`` (or fetch ``keys``) with ``concurrency`` requests in flight.

    Outcomes come in input order.
    """
    config = settings.load()
    options = [("grpc.max_send_message_length", config.max_message_bytes)]
    with channels.channel(target, config, options) as channel:
        stub = pb_grpc.ImageInputStub(channel)
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool, logging_redirect_tqdm():
            if keys:
                futures = [pool.submit(get_result, stub, key, timeout) for key in keys]
            else:
                futures = [pool.submit(process_file, stub, path, timeout, recompute, annotate) for path in paths]
            outcomes = []
            # disable=None: no bar when stderr is not a terminal (logs, CI)
            for future in tqdm(futures, desc="images", unit="img", disable=None if progress else True):
                outcome = future.result()
                log_outcome(outcome)
                outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    config = settings.load()
    parser = argparse.ArgumentParser(
        prog="python -m grpc_facade.client",
        description="Send images (files, folders, globs) to the facade's ImageInput.ProcessImage.",
    )
    parser.add_argument("inputs", nargs="*", default=[str(config.images_dir)], help="files, folders or globs (default: IMAGES_DIR)")
    parser.add_argument("--target", default=f"localhost:{config.grpc_port}", help="facade address (default: localhost:GRPC_PORT)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="requests in flight (default: 1)")
    parser.add_argument("--timeout", type=float, default=config.request_timeout, help="deadline per request in seconds")
    parser.add_argument("--json", action="store_true", help="print the responses as JSON instead of a table")
    parser.add_argument("--recompute", action="store_true", help="run the models again even for images already processed")
    parser.add_argument("--annotate", action="store_true", help="also write <key>.annotated.jpg with boxes, points and labels")
    parser.add_argument("--get", nargs="+", metavar="KEY", help="fetch stored results by key (GetResult) instead of sending images")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logs.setup()
    paths = [] if args.get else expand(args.inputs)
    if not paths and not args.get:
        parser.error(f"no images found in {' '.join(args.inputs)}")
    outcomes = run(
        paths, args.target, args.concurrency, args.timeout,
        progress=not args.no_progress, recompute=args.recompute, keys=args.get, annotate=args.annotate,
    )
    if args.json:
        print(json.dumps([
            {"image": str(o.path), "error": o.error,
             "response": MessageToDict(o.response, preserving_proto_field_name=True) if o.response else None}
            for o in outcomes
        ], indent=2))
    else:
        print(summary_table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
