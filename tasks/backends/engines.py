"""Which engine runs a network on the CPU: OpenVINO in bfloat16 when asked for and the
CPU computes bfloat16 natively, else onnxruntime in float32 (``AGEGENDER_BF16``,
``DETECT_BF16``; docs/models.md)."""

from __future__ import annotations

import logging
from typing import Any

import onnxruntime as ort

from tasks.backends.onnx_session import cpu_session

log = logging.getLogger(__name__)


def cpu_network(
    model: str | bytes,
    name: str,
    *,
    threads: int,
    bf16: bool,
    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
) -> Any:
    """A session for ``model`` (a path or serialized ONNX) with onnxruntime's ``get_inputs``,
    ``get_outputs`` and ``run``: OpenVINO on one thread in bfloat16 when ``bf16`` and the
    CPU has it natively, else onnxruntime on ``threads`` threads at graph optimisation
    ``level``. The log says which network (``name``) runs in bfloat16, or could not."""
    if bf16:
        # Imported only when asked for: OpenVINO adds memory to every process that loads it.
        from tasks.backends.openvino_session import OpenVinoSession, native_bf16

        if native_bf16():
            log.info("%s runs in bfloat16 on OpenVINO", name)
            return OpenVinoSession(model)  # one thread: in bfloat16 more threads cost more CPU than they save time
        log.info("this CPU has no native bfloat16: %s runs in float32 on onnxruntime", name)
    return cpu_session(model, threads, level)
