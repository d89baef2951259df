"""The accuracy benchmark on the shipped labelled set: the default backend's goals."""

from __future__ import annotations

import subprocess
import sys

from tasks.settings import PROJECT_ROOT


def test_default_backend_finds_every_face_and_gets_no_gender_wrong() -> None:
    result = subprocess.run(
        [sys.executable, "bench/accuracy.py", "images", "bench/labels.tsv"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("| embedded")}
    default = rows["embedded + flip + Unknown below 0.75 (default)"]
    assert default[0] == "2/2"  # every image: face count within its labelled range
    assert default[1] == "1/1"  # the astronaut is a woman
    right, unknown, wrong = (int(n) for n in default[2].split(" / "))
    assert wrong == 0 and right + unknown == 7 and right >= 6
