"""Creating onnxruntime sessions the same way for every backend."""

from __future__ import annotations

import onnxruntime as ort

# Named explicitly: some onnxruntime builds list other providers first (for example
# Azure's), which are slower or unavailable offline.
CPU = ["CPUExecutionProvider"]


def cpu_options(threads: int) -> ort.SessionOptions:
    """``threads`` intra-op threads, sequential execution, full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def cpu_session(model: str | bytes, threads: int) -> ort.InferenceSession:
    """A CPU-only session for a model file path or serialized model."""
    return ort.InferenceSession(model, sess_options=cpu_options(threads), providers=CPU)
