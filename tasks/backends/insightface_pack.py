"""insightface model packs (``buffalo_l``, ``buffalo_s``...) as a backend for both stages.

A pack is a folder of ONNX files in insightface's own layout,
``<INSIGHTFACE_HOME>/models/<INSIGHTFACE_PACK>/`` (``buffalo_l`` holds ``det_10g.onnx``,
``2d106det.onnx``, ``genderage.onnx``, ``1k3d68.onnx`` and ``w600k_r50.onnx``).

* :class:`InsightFaceDetector` runs the pack's SCRFD detector through
  ``insightface.app.FaceAnalysis`` (plus the 2d106det landmark model when 106 points are
  configured).
* :class:`InsightFaceAgeGender` runs the pack's ``genderage`` network on faces found by
  whichever detector ran.

Nothing here ever downloads: insightface fetches a pack by itself when
``FaceAnalysis`` is given a pack *name* that is not on disk, so ``prepare()`` checks the
folder first and then hands ``FaceAnalysis`` the folder's absolute path (a path that
exists is used as is), and the genderage file is loaded by path through
``model_zoo.get_model`` (which downloads only when asked to with ``download=True``).
Users fetch the pack themselves; :class:`ModelPackMissing` says how.

insightface's library code is MIT, but its pretrained packs are for non-commercial
research use only.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import onnx
from google.protobuf.message import DecodeError

from tasks.backends.base import AgeGender, Box, DetectedFace
from tasks.backends.onnx_session import CPU, cpu_options
from tasks.shared.imaging import RGBImage

FIVE_POINT_SCHEME = (
    "5-point (insightface SCRFD): left eye, right eye, nose tip, left mouth corner, "
    "right mouth corner (left and right as seen in the image)"
)
HUNDRED_SIX_POINT_SCHEME = "106-point (insightface 2d106det): 2D landmarks in that model's order"

_DETECTION = "detection"
_LANDMARK_106 = "landmark_2d_106"
_GENDERAGE = "genderage"
_GENDERAGE_SIDE = 96  # insightface routes a 96x96-input network with 3 outputs to genderage
_GENDERS = ("Female", "Male")  # insightface: gender index 1 is "M", 0 is "F"


class ModelPackMissing(RuntimeError):
    """The configured insightface model pack, or a model the backend needs, is not on disk."""


def pack_directory(home: Path, pack: str) -> Path:
    """Where insightface keeps pack ``pack`` under ``home``: ``<home>/models/<pack>``."""
    return Path(home).expanduser() / "models" / pack


def _how_to_get(directory: Path, pack: str) -> str:
    home = directory.parent.parent
    return (
        f"Get the pack yourself (it is never downloaded at run time): either run "
        f"`insightface-cli model.download {pack} --root {home}` on a machine with internet "
        f"access, or download "
        f"https://github.com/deepinsight/insightface/releases/download/model-zoo/{pack}.zip "
        f"and unzip it so that its .onnx files sit directly in {directory}. Then set "
        f"INSIGHTFACE_HOME={home} and INSIGHTFACE_PACK={pack} (insightface's pretrained "
        f"packs are for non-commercial research use only)."
    )


def _check_pack_directory(directory: Path, pack: str) -> list[Path]:
    """The pack's ONNX files, or :class:`ModelPackMissing` saying what to do."""
    if not directory.is_dir():
        raise ModelPackMissing(
            f"insightface model pack {pack!r} not found: expected the directory {directory}. "
            + _how_to_get(directory, pack)
        )
    files = sorted(directory.glob("*.onnx"))
    if not files:
        nested = sorted(directory.glob("*/*.onnx"))
        hint = (
            f" (found {nested[0].name} in {nested[0].parent}: move the .onnx files up one level)"
            if nested
            else ""
        )
        raise ModelPackMissing(
            f"insightface model pack {pack!r}: no .onnx file directly in {directory}{hint}. "
            + _how_to_get(directory, pack)
        )
    return files


class InsightFaceDetector:
    """Face detector from an insightface pack: ``prepare()`` once, then ``detect(rgb)``.

    Returns SCRFD's boxes and scores with its 5 keypoints, or with the 106 points of the
    pack's 2d106det model when ``points=106``.
    """

    def __init__(
        self,
        home: Path,
        pack: str,
        *,
        points: int = 5,
        threads: int = 1,
        max_side: int = 640,
        threshold: float = 0.5,
    ) -> None:
        if points not in (5, 106):
            raise ValueError(f"the insightface backend gives 5 or 106 landmark points, not {points}")
        self.pack = pack
        self.directory = pack_directory(home, pack)
        self.points = points
        self.threads = threads
        # SCRFD pads the image into a square network input whose side is a multiple of 32.
        self.side = max(32, math.ceil(max_side / 32) * 32)
        self.threshold = threshold
        self.name = f"insightface-{pack}"
        self.point_scheme = HUNDRED_SIX_POINT_SCHEME if points == 106 else FIVE_POINT_SCHEME
        self._app = None

    def prepare(self) -> None:
        """Check the pack, load its detector (and 2d106det) on the CPU, run it once."""
        if self._app is not None:
            return
        _check_pack_directory(self.directory, self.pack)
        from insightface.app import FaceAnalysis

        modules = [_DETECTION, _LANDMARK_106] if self.points == 106 else [_DETECTION]
        try:
            # An existing directory path is loaded as is; only a bare pack name would make
            # insightface look it up under its root and download it when absent.
            app = FaceAnalysis(
                name=str(self.directory.resolve()),
                allowed_modules=modules,
                providers=CPU,
                sess_options=cpu_options(self.threads),
            )
        except (AssertionError, KeyError):  # insightface asserts that a detector was found
            app = None
        if app is None or _DETECTION not in app.models:
            raise ModelPackMissing(
                f"insightface model pack {self.pack!r} in {self.directory} has no face "
                f"detection model (SCRFD, e.g. det_10g.onnx). " + _how_to_get(self.directory, self.pack)
            )
        if self.points == 106 and _LANDMARK_106 not in app.models:
            raise ModelPackMissing(
                f"LANDMARK_POINTS=106 needs the 106-point landmark model (2d106det.onnx), which "
                f"insightface model pack {self.pack!r} in {self.directory} lacks; set "
                f"LANDMARK_POINTS=5 or use a pack that has it (buffalo_l, buffalo_s). "
                + _how_to_get(self.directory, self.pack)
            )
        if self.points == 5 and not getattr(app.det_model, "use_kps", False):
            raise ModelPackMissing(
                f"the detector of insightface model pack {self.pack!r} in {self.directory} "
                f"gives no keypoints; use a pack whose SCRFD model has them (buffalo_l, buffalo_s)"
            )
        # ctx_id only matters for GPU providers; the sessions are CPU-only already.
        app.prepare(ctx_id=0, det_thresh=self.threshold, det_size=(self.side, self.side))
        self._app = app
        # Builds SCRFD's session for this input size and initialises every kernel.
        self.detect(np.zeros((self.side, self.side, 3), dtype=np.uint8))

    def detect(self, image: RGBImage) -> list[DetectedFace]:
        """Faces in ``image`` (RGB), boxes and points in its pixel coordinates, best first."""
        if self._app is None:
            raise RuntimeError("InsightFaceDetector.prepare() must be called before detect()")
        height, width = image.shape[:2]
        # SCRFD scales the longer side to the network side; a side that would shrink to
        # nothing cannot hold a face (and would make its resize fail).
        if height == 0 or width == 0 or (self.side * min(height, width)) // max(height, width) == 0:
            return []
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # insightface works on BGR images
        faces = []
        for face in self._app.get(bgr):
            x1, y1, x2, y2 = (float(v) for v in face.bbox[:4])
            box = Box(
                min(max(x1, 0.0), width),
                min(max(y1, 0.0), height),
                min(max(x2, 0.0), width),
                min(max(y2, 0.0), height),
                float(face.det_score),
            )
            points = face[_LANDMARK_106] if self.points == 106 else face.kps
            faces.append(DetectedFace(box, tuple((float(x), float(y)) for x, y in np.asarray(points)[:, :2])))
        return faces


class InsightFaceAgeGender:
    """Age/gender from an insightface pack's ``genderage`` network: ``prepare()`` once,
    then ``estimate(rgb, faces)``.

    Each face is cropped as insightface does it: a square 1.5 times the box's longer side,
    centred on the box, scaled to 96x96 (the 5 points are not used; the network was
    trained on such box crops). The network outputs two gender scores and age / 100.
    ``gender_confidence`` is the softmax of the two gender scores for the chosen gender.
    The network gives no measure of how sure its age is, so ``age_confidence`` is
    always 0.0.
    """

    face_side = _GENDERAGE_SIDE

    def __init__(self, home: Path, pack: str, *, threads: int = 1) -> None:
        self.pack = pack
        self.directory = pack_directory(home, pack)
        self.threads = threads
        self.name = f"insightface-{pack}"
        self._model = None

    def prepare(self) -> None:
        """Check the pack, load its genderage network on the CPU, run it once."""
        if self._model is not None:
            return
        files = _check_pack_directory(self.directory, self.pack)
        path = next((f for f in _conventional_first(files) if _is_genderage_graph(f)), None)
        if path is None:
            raise ModelPackMissing(
                f"insightface model pack {self.pack!r} in {self.directory} has no age/gender "
                f"model (genderage.onnx); use a pack that has it (buffalo_l, buffalo_s). "
                + _how_to_get(self.directory, self.pack)
            )
        from insightface.model_zoo import model_zoo

        # A path ending in .onnx is loaded as is; get_model downloads only with download=True.
        model = model_zoo.get_model(
            str(path), providers=CPU, sess_options=cpu_options(self.threads)
        )
        if model is None or getattr(model, "taskname", None) != _GENDERAGE:
            raise ModelPackMissing(f"insightface does not load {path} as an age/gender model")
        self._model = model
        self._side = int(model.input_size[0])
        blank = np.zeros((1, 3, self._side, self._side), dtype=np.float32)
        model.session.run(model.output_names, {model.input_name: blank})

    def estimate(self, image: RGBImage, faces: list[DetectedFace]) -> list[AgeGender]:
        """One :class:`AgeGender` per face, in the order of ``faces``."""
        if self._model is None:
            raise RuntimeError("InsightFaceAgeGender.prepare() must be called before estimate()")
        return [self._estimate_one(image, face.box) for face in faces]

    def _estimate_one(self, image: RGBImage, box: Box) -> AgeGender:
        from insightface.utils import face_align

        model = self._model
        side = self._side
        longer = max(box.x2 - box.x1, box.y2 - box.y1, 1.0)
        centre = ((box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2)
        crop, _ = face_align.transform(image, centre, side, side / (longer * 1.5), 0)
        # insightface crops the BGR image and swaps to RGB in the blob; cropping our RGB
        # image and not swapping feeds the network the same RGB tensor.
        blob = cv2.dnn.blobFromImage(
            crop,
            1.0 / model.input_std,
            (side, side),
            (model.input_mean, model.input_mean, model.input_mean),
            swapRB=False,
        )
        prediction = model.session.run(model.output_names, {model.input_name: blob})[0][0]
        scores = np.asarray(prediction[:2], dtype=np.float64)
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        index = int(np.argmax(probabilities))
        return AgeGender(
            age=float(prediction[2]) * 100.0,
            age_confidence=0.0,
            gender=_GENDERS[index],
            gender_confidence=float(probabilities[index]),
        )


def _conventional_first(files: list[Path]) -> list[Path]:
    """``genderage.onnx`` (the name in insightface's packs) before the other files."""
    return sorted(files, key=lambda f: f.name != "genderage.onnx")


def _is_genderage_graph(path: Path) -> bool:
    """Whether insightface would route ``path`` to its genderage model: fewer than 5
    outputs, a 96x96 image input and one output of 3 values."""
    try:
        graph = onnx.load_model(str(path), load_external_data=False).graph
    except (DecodeError, OSError, ValueError):  # unreadable: not the model we look for
        return False
    weights = {w.name for w in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if not inputs or len(graph.output) != 1:
        return False
    in_dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    return (
        len(in_dims) == 4
        and in_dims[2:] == [_GENDERAGE_SIDE, _GENDERAGE_SIDE]
        and len(out_dims) == 2
        and out_dims[1] == 3
    )
