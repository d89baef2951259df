"""Two configurations of the service side by side, measured in the same minutes.

    .venv/bin/python bench/ab.py AGEGENDER_BF16=1            # the defaults against this setting
    .venv/bin/python bench/ab.py --base ORT_THREADS=1 ORT_THREADS=2 --width 1920

Starts two stacks (``bench/speed.py``'s private stacks: own ports, Redis and output),
A with ``--base`` settings (default: none) and B with the given ones, then sends
batches of different copies of a photo at ``--concurrency`` to each in turn, the order
swapped every round. For each batch it records the CPU time of every process of that
stack per image and the images per second. Runs minutes apart on these machines drift
by more than many changes are worth; batches interleaved like this do not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_by_role  # noqa: E402
from bench.report import publish  # noqa: E402
from bench.speed import distinct_copies, end_to_end, machine, photo_options, private_stack, resized  # noqa: E402


def setting(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` from the command line."""
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


@contextlib.contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """``settings`` in ``os.environ`` (which the stack's processes inherit) for a while."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stack_cpu(launcher: int) -> float:
    """CPU seconds used so far by every process of the stack started by ``launcher``."""
    return sum(cpu_by_role(launcher).values())


def measure(launcher: int, target: str, images: list[bytes], concurrency: int) -> tuple[float, float]:
    """(CPU ms per image, images per second) for one batch."""
    before, started = stack_cpu(launcher), time.perf_counter()
    end_to_end(target, images, concurrency)
    seconds = time.perf_counter() - started
    return (stack_cpu(launcher) - before) / len(images) * 1e3, len(images) / seconds


def label(settings: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings.items()) or "defaults"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/ab.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", type=setting, help="B's settings, NAME=VALUE")
    parser.add_argument("--base", nargs="*", type=setting, default=[], help="A's settings (default: none)")
    photo_options(parser)
    parser.add_argument("--rounds", type=int, default=6, help="batches per configuration (default 6)")
    parser.add_argument("--images", type=int, default=48, help="images per batch (default 48)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a line for the heading (what is compared)")
    args = parser.parse_args(argv)
    configs = {"A": dict(args.base), "B": dict(args.settings)}

    warm_up = 16
    copies = iter(distinct_copies(resized(ROOT / "images" / args.photo, args.width), 2 * (args.images * args.rounds + warm_up)))
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    with contextlib.ExitStack() as stacks:
        running = {}
        for name, settings in configs.items():
            with environment(settings):
                launcher, target, _ = stacks.enter_context(private_stack())
            running[name] = (launcher.pid, target)
            end_to_end(target, [next(copies) for _ in range(warm_up)], args.concurrency)
        for round_ in tqdm(range(args.rounds), desc="rounds", unit="round"):
            for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                results[name].append(measure(*running[name], [next(copies) for _ in range(args.images)], args.concurrency))

    lines = [
        f"### {date.today().isoformat()}: {args.note or 'bench/ab.py'}: {label(configs['A'])} against {label(configs['B'])}",
        "",
        f"Machine: {machine()}. Two stacks side by side; {args.rounds} batches each of {args.images} different "
        f"copies of {args.photo} at {args.width} px, {args.concurrency} in flight, sent to A and B in turn "
        f"(order swapped every round); CPU of every process of the stack per image (user + system).",
        "",
        "| configuration | CPU ms per image (median) | img/s (median) | CPU ms per batch | img/s per batch |",
        "|---|---|---|---|---|",
    ]
    for name, settings in configs.items():
        cpu, rate = [c for c, _ in results[name]], [r for _, r in results[name]]
        lines.append(f"| {name}: {label(settings)} | {statistics.median(cpu):.1f} | {statistics.median(rate):.2f} | "
                     f"{' / '.join(f'{c:.1f}' for c in cpu)} | {' / '.join(f'{r:.2f}' for r in rate)} |")
    publish("\n".join(lines) + "\n", append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
