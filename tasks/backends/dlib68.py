"""Dense landmarks: dlib's 68-point shape predictor inside each detected face box.

The predictor (``shape_predictor_68_face_landmarks.dat``) ships in the
``face-recognition-models`` wheel. It was trained on the iBUG 300-W data set, whose
terms exclude commercial use: that is why 68 points are opt-in (``LANDMARK_POINTS=68``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dlib

from tasks.backends.base import DetectedFace, FaceDetector
from tasks.shared.imaging import RGBImage

POINT_SCHEME = "68-point (iBUG 300-W): jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67"


def bundled_model_path() -> Path:
    """Where ``face-recognition-models`` installed the predictor (found without importing
    the package, whose ``__init__`` needs setuptools' ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("LANDMARK_POINTS=68 needs the face-recognition-models package (pip install face-recognition-models)")
    return Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"


class Dlib68Landmarks:
    """A detector's faces with 68 points each: ``prepare()`` once, then ``detect(rgb)``."""

    point_scheme = POINT_SCHEME

    def __init__(self, detector: FaceDetector, model_path: Path | None = None) -> None:
        self.detector = detector
        self.model_path = model_path
        self.name = f"{detector.name}+dlib68"
        self._predictor: dlib.shape_predictor | None = None

    def prepare(self) -> None:
        if self._predictor is not None:
            return
        self.detector.prepare()
        path = self.model_path or bundled_model_path()
        if not path.is_file():
            raise RuntimeError(f"dlib's 68-point predictor is missing at {path}")
        self._predictor = dlib.shape_predictor(str(path))

    def detect(self, image: RGBImage) -> list[DetectedFace]:
        """The detector's faces, each with its 68 points instead of the detector's own."""
        if self._predictor is None:
            raise RuntimeError("Dlib68Landmarks.prepare() must be called before detect()")
        faces = []
        for face in self.detector.detect(image):
            box = face.box
            shape = self._predictor(image, dlib.rectangle(round(box.x1), round(box.y1), round(box.x2), round(box.y2)))
            points = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
            faces.append(DetectedFace(box, points))
        return faces
