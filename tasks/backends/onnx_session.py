"""Creating onnxruntime sessions the same way for every backend."""

from __future__ import annotations

from functools import cache

import onnxruntime as ort

# Named explicitly: some onnxruntime builds list other providers first (for example
# Azure's), which are slower or unavailable offline.
CPU = ["CPUExecutionProvider"]


@cache
def _one_arena_per_process() -> None:
    """Register one CPU memory arena in onnxruntime's environment, for every session of
    this process to share (``session.use_env_allocators``).

    A session's own arena keeps the peak of every input shape it has seen; two sessions
    of one model (``ORT_THREADS`` and ``IDLE_THREADS``, never running at once) would
    keep two such peaks. Measured with both CenterFace sessions after ten different
    shapes: 388 MB resident with an arena each, 285 MB with the shared one.
    """
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults


def cpu_options(threads: int) -> ort.SessionOptions:
    """``threads`` intra-op threads, sequential execution, full graph optimisation, no
    spinning once a run has ended, the process's shared memory arena."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Several threads spin between operators (fast), but must stop when a run ends: a
    # lone detection's threads would otherwise keep spinning on the core that the
    # age/gender stage starts on next (measured: +60 ms of CPU per image there).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    _one_arena_per_process()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def cpu_session(model: str | bytes, threads: int) -> ort.InferenceSession:
    """A CPU-only session for a model file path or serialized model."""
    return ort.InferenceSession(model, sess_options=cpu_options(threads), providers=CPU)
