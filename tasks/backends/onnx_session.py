"""Creating onnxruntime sessions the same way for every backend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# Named explicitly: some onnxruntime builds list other providers first (for example
# Azure's), which are slower or unavailable offline.
CPU = ["CPUExecutionProvider"]


@cache
def _one_arena_per_process() -> None:
    """Register one CPU memory arena for every session of this process to share
    (``session.use_env_allocators``): an arena keeps the peak of every input shape it
    has seen, and one per session would keep one such peak per session."""
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults


def cpu_options(threads: int, level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.SessionOptions:
    """``threads`` intra-op threads that never spin, sequential execution, graph
    optimisation ``level`` (full by default), the process's shared memory arena."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    options.log_severity_level = 3
    # Spinning threads make a lone run a little faster but, with every core busy, burn the
    # CPU another process needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    _one_arena_per_process()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def machine_busy(loadavg: Path = Path("/proc/loadavg"), cores: int | None = None) -> bool:
    """Whether other threads fill every core this process may use right now: the
    machine's runnable threads (``loadavg``'s fourth field), the caller's one excepted,
    at least ``cores``. False when that cannot be read."""
    try:
        runnable = int(loadavg.read_bytes().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return False
    return runnable - 1 >= (cores or len(os.sched_getaffinity(0)))


class CpuSession:
    """One network on the CPU: run on ``threads`` intra-op threads, or on one while other
    work fills every core (more threads then only cost more CPU and gain no speed).

    Two onnxruntime sessions of the same model, since a session's thread count is fixed;
    they share the process's memory arena. ``get_inputs``, ``get_outputs`` and ``run``
    behave as onnxruntime's own.
    """

    def __init__(self, model: str | bytes, threads: int, level: ort.GraphOptimizationLevel) -> None:
        self._narrow = ort.InferenceSession(model, sess_options=cpu_options(1, level), providers=CPU)
        self._wide = None
        if threads > 1:
            self._wide = ort.InferenceSession(model, sess_options=cpu_options(threads, level), providers=CPU)
        self.get_inputs = self._narrow.get_inputs
        self.get_outputs = self._narrow.get_outputs

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        session = self._narrow if self._wide is None or machine_busy() else self._wide
        return session.run(output_names, feeds)


def cpu_session(
    model: str | bytes, threads: int, level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
) -> CpuSession:
    """A CPU-only session for a model file path or serialized model (see :class:`CpuSession`)."""
    return CpuSession(model, threads, level)
