"""bench/ab.py: two stacks side by side, each with its own settings, batches in turn."""

from __future__ import annotations

import argparse
import os
import re
import sys

import pytest

from bench.ab import environment, setting
from tests.conftest import run_script


def test_settings_are_name_equals_value() -> None:
    assert setting("AGEGENDER_BF16=1") == ("AGEGENDER_BF16", "1")
    assert setting("DETECT_THRESHOLD=") == ("DETECT_THRESHOLD", "")
    for bad in ("AGEGENDER_BF16", "=1", "NOT A NAME=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            setting(bad)


def test_the_environment_is_set_for_a_while_then_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_AB_KEPT", "before")
    monkeypatch.delenv("BENCH_AB_NEW", raising=False)
    with environment({"BENCH_AB_KEPT": "during", "BENCH_AB_NEW": "x"}):
        assert os.environ["BENCH_AB_KEPT"] == "during" and os.environ["BENCH_AB_NEW"] == "x"
    assert os.environ["BENCH_AB_KEPT"] == "before" and "BENCH_AB_NEW" not in os.environ


def test_two_configured_stacks_answer_in_turn_and_are_measured() -> None:
    done = run_script(
        [sys.executable, "bench/ab.py", "ORT_THREADS=1", "--base", "ORT_THREADS=2", "--photo", "astronaut.jpg",
         "--width", "256", "--rounds", "2", "--images", "4", "--concurrency", "2", "--no-append"],
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^\| ([AB]): (.+?) \| ([\d.]+) \| ([\d.]+) \| (.+) \| (.+) \|$", done.stdout, re.MULTILINE)
    assert [(row[0], row[1]) for row in rows] == [("A", "ORT_THREADS=2"), ("B", "ORT_THREADS=1")]
    for _, _, cpu, rate, per_batch_cpu, per_batch_rate in rows:
        assert float(cpu) > 0 and float(rate) > 0
        assert len(per_batch_cpu.split(" / ")) == len(per_batch_rate.split(" / ")) == 2
