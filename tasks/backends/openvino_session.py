"""Running an ONNX network with OpenVINO on the CPU, in bfloat16 where the CPU computes
it natively (AMX or AVX-512 BF16), else in float32.

bfloat16 keeps about three significant digits: the age and gender networks run so by
default (``AGEGENDER_BF16``, genders checked unchanged), CenterFace only when asked
(``DETECT_BF16``, boxes move a little). See docs/models.md.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import openvino as ov

PRECISIONS = ("bf16", "f32")


@cache
def _core() -> ov.Core:
    return ov.Core()


@cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (OpenVINO lists it among its capabilities)."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def effective_precision(requested: str, native: bool | None = None) -> str:
    """``requested`` (``bf16`` or ``f32``), or ``f32`` where the CPU has no native bfloat16
    (emulated, it would be slower than float32)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    return "bf16" if requested == "bf16" and (native_bf16() if native is None else native) else "f32"


@dataclass(frozen=True)
class Port:
    """A network's input or output, named as in the ONNX graph."""

    name: str


class OpenVinoSession:
    """One network compiled for the CPU: ``get_inputs``, ``get_outputs`` and ``run``
    behave as onnxruntime's, so a backend need not care which engine runs it.

    Runs on ``threads`` threads in ``precision`` (see :func:`effective_precision`); the
    batch and image sizes may change from call to call.
    """

    def __init__(self, model: str | bytes, threads: int = 1, precision: str = "bf16") -> None:
        self.precision = effective_precision(precision)
        compiled = _core().compile_model(_core().read_model(model), "CPU", {
            "INFERENCE_NUM_THREADS": max(1, threads),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.precision,
            # Pinning ties the calling thread to the first core while it infers, the same
            # core in every worker process, so that two processes' networks take turns.
            "ENABLE_CPU_PINNING": False,
        })
        self._inputs = [Port(port.any_name) for port in compiled.inputs]
        self._outputs = [Port(port.any_name) for port in compiled.outputs]
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # one request object: one run at a time

    def get_inputs(self) -> list[Port]:
        return self._inputs

    def get_outputs(self) -> list[Port]:
        return self._outputs

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        """The named outputs (every output when ``None``) for ``feeds``."""
        with self._lock:
            results = {port.any_name: value for port, value in self._request.infer(feeds).items()}
            # Copied: the request reuses its output buffers on the next run.
            return [np.array(results[name]) for name in output_names or [port.name for port in self._outputs]]
