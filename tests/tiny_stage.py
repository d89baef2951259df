"""A per-face stage made for the tests: a tiny ONNX network, generated here, that says
how bright each face is. Registered with ``STAGE_PLUGINS=brightness=tests.tiny_stage:build``,
it shows that a new stage is one class and one registry entry."""

from __future__ import annotations

import cv2
import numpy as np
from onnx import TensorProto, helper

from tasks.backends.base import DetectedFace
from tasks.backends.onnx_session import cpu_session
from tasks.shared.imaging import RGBImage
from tasks.shared.settings import Settings

SIDE = 32


def brightness_network() -> bytes:
    """chips [N, 3, 32, 32] (0..255) -> brightness [N] (0..1): their mean, scaled."""
    mean = helper.make_node("ReduceMean", ["chips", "axes"], ["mean"], keepdims=0)
    scale = helper.make_node("Div", ["mean", "full"], ["brightness"])
    graph = helper.make_graph(
        [mean, scale], "brightness",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("brightness", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]), helper.make_tensor("full", TensorProto.FLOAT, [], [255.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()


class Brightness:
    name = "brightness"
    face_side = SIDE

    def prepare(self) -> None:
        self._session = cpu_session(brightness_network(), 1)

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[dict[str, float | str]]:
        if not faces:
            return []
        chips = []
        for face in faces:
            b = face.box
            crop = image[max(0, round(b.y1)):max(1, round(b.y2)), max(0, round(b.x1)):max(1, round(b.x2))]
            chips.append(cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA).transpose(2, 0, 1))
        (brightness,) = self._session.run(None, {"chips": np.stack(chips).astype(np.float32)})
        return [{"brightness": float(v), "tone": "light" if v > 0.5 else "dark"} for v in brightness]


def build(config: Settings) -> Brightness:
    return Brightness()
