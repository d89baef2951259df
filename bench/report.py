"""Adding a result to its section of docs/benchmarks.md (the benchmarks' shared record)."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def append_to_section(heading: str, text: str, path: Path = BENCHMARKS) -> None:
    """Put ``text`` at the end of the ``## heading`` section, before the next ``## ``
    section; a missing section is added at the end of the file."""
    document = path.read_text() if path.exists() else "# Benchmarks\n"
    title = f"## {heading}"
    start = document.find(f"\n{title}\n")
    if start < 0:
        document = document.rstrip("\n") + f"\n\n{title}\n\n{text.strip()}\n"
    else:
        following = document.find("\n## ", start + len(title) + 1)
        end = len(document) if following < 0 else following
        document = document[:end].rstrip("\n") + f"\n\n{text.strip()}\n" + document[end:]
    path.write_text(document)


SPEED = "Speed and memory (`bench/speed.py`)"


def publish(table: str, append: bool, heading: str = SPEED) -> None:
    """Print ``table`` and, when ``append``, add it to its section of docs/benchmarks.md."""
    print(table)
    if append:
        append_to_section(heading, table)
