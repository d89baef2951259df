"""Creating onnxruntime sessions the same way for every backend."""

from __future__ import annotations

import onnxruntime as ort

# Named explicitly: some onnxruntime builds list other providers first (for example
# Azure's), which are slower or unavailable offline.
CPU = ["CPUExecutionProvider"]


def cpu_options(threads: int) -> ort.SessionOptions:
    """``threads`` intra-op threads, sequential execution, full graph optimisation, no
    spinning once a run has ended."""
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
    return options


def cpu_session(model: str | bytes, threads: int) -> ort.InferenceSession:
    """A CPU-only session for a model file path or serialized model."""
    return ort.InferenceSession(model, sess_options=cpu_options(threads), providers=CPU)
