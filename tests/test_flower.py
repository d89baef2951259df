"""Flower, as an operator sees it: a real headless Chromium on its tasks page, and its API."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import requests
from PIL import Image

from proto import image_processing_pb2 as pb
from tests.conftest import FLOWER_PASSWORD, FLOWER_USER, RunningStack, variant

STAGE_TASKS = {"tasks.landmark.detect_landmarks", "tasks.agegender.estimate_age_gender", "tasks.storage.store_results"}


def flower_tasks(stack: RunningStack, key: str) -> dict[str, str]:
    """Task name -> state, for the tasks Flower has seen for image ``key``."""
    reply = requests.get(f"{stack.flower_url}/api/tasks", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
    reply.raise_for_status()
    return {task["name"]: task["state"] for task in reply.json().values() if key in (task.get("args") or "")}


def wait_for_flower_tasks(stack: RunningStack, key: str, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = flower_tasks(stack, key)
        if (seen.keys() >= STAGE_TASKS and all(seen[n] == "SUCCESS" for n in STAGE_TASKS)) or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def test_flower_requires_its_password(stack: RunningStack) -> None:
    assert requests.get(f"{stack.flower_url}/api/tasks", timeout=10).status_code == 401
    assert requests.get(f"{stack.flower_url}/api/tasks", auth=(FLOWER_USER, "wrong"), timeout=10).status_code == 401


def test_flower_lists_the_three_tasks_of_an_image_as_succeeded(stack: RunningStack, image_input, astronaut_bytes: bytes, tmp_path: Path) -> None:
    response = image_input.ProcessImage(pb.ImageRequest(image_data=variant(astronaut_bytes, 30)), timeout=60)
    assert response.status == "Success"
    seen = wait_for_flower_tasks(stack, response.redis_key)
    assert {name: seen.get(name) for name in STAGE_TASKS} == {name: "SUCCESS" for name in STAGE_TASKS}

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: ./run.sh test installs Debian's chromium package"
    screenshot = tmp_path / "flower-tasks.png"
    url = stack.flower_url.replace("http://", f"http://{FLOWER_USER}:{FLOWER_PASSWORD}@") + "/tasks"
    browser = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900", "--virtual-time-budget=5000",
    ]
    subprocess.run([*browser, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    # The page the browser rendered (after its scripts ran) lists the three tasks.
    dom = subprocess.run([*browser, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    for name in STAGE_TASKS:
        assert name in dom
    assert "SUCCESS" in dom
    with Image.open(screenshot) as image:
        assert image.size == (1400, 900)
        # A rendered page, not a blank or error screen: many distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
    artefacts = stack.log_dir.parent / "flower-tasks.png"
    shutil.copy(screenshot, artefacts)
