"""Creating onnxruntime sessions the same way for every backend."""

from __future__ import annotations

from functools import cache

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
    # CPU another process needs; blocked threads cost no more CPU than a single thread.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    _one_arena_per_process()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def cpu_session(
    model: str | bytes, threads: int, level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
) -> ort.InferenceSession:
    """A CPU-only session for a model file path or serialized model."""
    return ort.InferenceSession(model, sess_options=cpu_options(threads, level), providers=CPU)
