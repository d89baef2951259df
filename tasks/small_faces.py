"""A second, finer detection pass for crowds: the small faces a scaled-down picture loses.

Detection scales a large picture down to ``DETECT_MAX_SIDE``, where faces a few pixels
smaller than the smallest one found vanish (the detector's limit). When the first pass
finds a face near that limit, the picture is looked at again, larger, in tiles of the
detector's own input size (so memory stays what one detection needs), and what the tiles
find is added to what the first pass found. Photos without small faces pay nothing.
"""

from __future__ import annotations

import math

import cv2

from tasks.backends.base import DetectedFace, FaceDetector
from tasks.shared.imaging import RGBImage

HINT_PX = 16  # a face this small at detection scale hints at smaller ones the detector cannot see
TARGET_PX = 24  # the finer pass enlarges so that the smallest face found becomes this big
_MIN_GAIN = 1.25  # a finer pass less than this much larger would find nothing new
_EDGE_PX = 2  # a face this close to a tile's inner edge is cut: another tile holds it whole


def finer_side(faces: list[DetectedFace], longer_side: int, detect_side: int, max_side: int) -> int:
    """The longer side (at most ``max_side``) to look at the picture again for small faces,
    or 0 when the first pass (at ``detect_side``, ``faces`` in full-size coordinates)
    found no face near the detector's limit or saw the picture at full size already."""
    if max_side <= 0 or not faces or longer_side <= detect_side:
        return 0
    first_scale = detect_side / longer_side
    smallest = min(min(f.box.x2 - f.box.x1, f.box.y2 - f.box.y1) for f in faces) * first_scale
    if smallest >= HINT_PX:
        return 0
    side = min(longer_side, max_side, math.ceil(detect_side * TARGET_PX / max(smallest, 1.0)))
    return side if side >= detect_side * _MIN_GAIN else 0


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along a side of ``length``: evenly spread,
    neighbours overlapping by at least ``overlap``, the last one ending at the edge."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def detect_tiled(detector: FaceDetector, image: RGBImage, tile: int) -> list[DetectedFace]:
    """Faces in ``image`` found tile by tile (each at most ``tile`` pixels across, seen at
    its own size), in ``image`` coordinates; a face cut by a tile's inner edge is left
    to the neighbouring tile, which overlaps it by a quarter tile."""
    height, width = image.shape[:2]
    overlap = tile // 4
    found: list[DetectedFace] = []
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            bottom, right = min(height, top + tile), min(width, left + tile)
            for face in detector.detect(image[top:bottom, left:right]):
                b = face.box
                inner_cut = (
                    (left > 0 and b.x1 < _EDGE_PX)
                    or (top > 0 and b.y1 < _EDGE_PX)
                    or (right < width and b.x2 > right - left - _EDGE_PX)
                    or (bottom < height and b.y2 > bottom - top - _EDGE_PX)
                )
                if not inner_cut:
                    found.append(face.shifted(left, top))
    return found


def merged(first: list[DetectedFace], finer: list[DetectedFace]) -> list[DetectedFace]:
    """The first pass's faces, then each finer face that is none of those already kept
    (its centre outside every kept box), best score first."""
    kept = list(first)
    for face in sorted(finer, key=lambda f: -f.box.score):
        x, y = (face.box.x1 + face.box.x2) / 2, (face.box.y1 + face.box.y2) / 2
        if not any(k.box.x1 <= x <= k.box.x2 and k.box.y1 <= y <= k.box.y2 for k in kept):
            kept.append(face)
    return kept


def with_small_faces(
    detector: FaceDetector, first: list[DetectedFace], larger: RGBImage, scale: float, tile: int
) -> list[DetectedFace]:
    """``first`` plus the faces a tiled pass over ``larger`` (``scale`` times smaller than
    the full picture, whose coordinates every face keeps) adds."""
    return merged(first, [face.scaled(scale) for face in detect_tiled(detector, larger, tile)])


def resized(image: RGBImage, longer_side: int) -> RGBImage:
    """``image`` scaled down so that its longer side is ``longer_side`` (as it is if not larger)."""
    height, width = image.shape[:2]
    factor = longer_side / max(height, width)
    if factor >= 1:
        return image
    return cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)

