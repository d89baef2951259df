"""Benchmark results land in their own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from bench.report import append_to_section


def test_appends_inside_the_named_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Speed\n\nold speed\n\n## Accuracy\n\nold accuracy\n")
    append_to_section("Speed", "newer speed", doc)
    append_to_section("Accuracy", "new accuracy", doc)
    append_to_section("Load", "first load", doc)
    text = doc.read_text()
    assert text.index("old speed") < text.index("newer speed") < text.index("## Accuracy")
    assert text.index("old accuracy") < text.index("new accuracy") < text.index("## Load") < text.index("first load")
    assert text.count("## Speed") == 1 and text.count("## Accuracy") == 1
