"""The finer second detection pass for crowds (tasks/small_faces.py): its rules as plain
functions, then the real detector on a crowd made of small copies of t1."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import models, small_faces, stages
from tasks.backends.base import Box, DetectedFace


def face(x1: float, y1: float, side: float, score: float = 0.9) -> DetectedFace:
    return DetectedFace(Box(x1, y1, x1 + side, y1 + side, score), ((x1 + side / 2, y1 + side / 2),))


def test_no_second_pass_without_a_face_near_the_detectors_limit() -> None:
    # 2560 px seen at 640: a 100 px face is 25 px there, well above the limit.
    assert small_faces.finer_side([face(0, 0, 100)], 2560, 640, 1920) == 0
    assert small_faces.finer_side([], 2560, 640, 1920) == 0


def test_no_second_pass_when_detection_saw_the_full_picture_or_it_is_off() -> None:
    assert small_faces.finer_side([face(0, 0, 10)], 640, 640, 1920) == 0
    assert small_faces.finer_side([face(0, 0, 40)], 2560, 640, 0) == 0


def test_second_pass_enlarges_the_smallest_face_to_the_target_within_the_limits() -> None:
    # A 48 px face is 12 px at detection scale: enlarged 2x it reaches 24 px.
    assert small_faces.finer_side([face(0, 0, 48), face(0, 0, 200)], 2560, 640, 1920) == 1280
    # Smaller still: the picture's own size, or the configured maximum, bounds it.
    assert small_faces.finer_side([face(0, 0, 20)], 1500, 640, 1920) == 1500
    assert small_faces.finer_side([face(0, 0, 20)], 4000, 640, 1920) == 1920
    # Hardly larger than the first pass: nothing to gain.
    assert small_faces.finer_side([face(0, 0, 20)], 700, 640, 1920) == 0


@pytest.mark.parametrize("length", [100, 640, 641, 1000, 1536, 1920, 4001])
def test_tiles_cover_the_side_and_overlap_by_a_quarter(length: int) -> None:
    tile, overlap = 640, 160
    starts = small_faces.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(length, starts[-1] + tile) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert starts == sorted(set(starts))


def test_a_tiles_face_moves_into_the_pictures_coordinates() -> None:
    moved = face(10, 20, 30).shifted(640, 480)
    assert (moved.box.x1, moved.box.y1, moved.box.x2, moved.box.y2, moved.box.score) == (650, 500, 680, 530, 0.9)
    assert moved.points == ((665, 515),)


def test_merge_keeps_the_first_pass_and_adds_only_new_faces() -> None:
    first = [face(100, 100, 40)]
    finer = [face(105, 104, 30, 0.95), face(300, 300, 12, 0.6), face(302, 301, 11, 0.7)]
    kept = small_faces.merged(first, finer)
    assert kept[0] == first[0]
    # The face already found is not added twice; of two boxes on one new face, the best.
    assert [k.box.score for k in kept[1:]] == [0.7]


def test_second_pass_finds_the_crowds_small_faces_once_each(crowd_bytes: bytes) -> None:
    detector = models.face_detector()
    first = stages.landmarks_from_bytes(crowd_bytes, detector, 10**8, 640, small_faces_side=0)["faces"]
    both = stages.landmarks_from_bytes(crowd_bytes, detector, 10**8, 640, small_faces_side=1920)["faces"]
    assert len(first) < 10
    # Six faces per copy of t1, each once: ten copies.
    assert len(both) == 60
    centres = np.array([((f["box"]["x1"] + f["box"]["x2"]) / 2, (f["box"]["y1"] + f["box"]["y2"]) / 2) for f in both])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(len(both)) * 1e9
    assert distances.min() > 10
    # In full-size coordinates, with their points inside their boxes.
    assert centres[:, 0].max() < 2560 and centres[:, 1].max() > 1200
    for f in both:
        for x, y in f["points"]:
            assert f["box"]["x1"] - 2 <= x <= f["box"]["x2"] + 2 and f["box"]["y1"] - 2 <= y <= f["box"]["y2"] + 2


def test_photos_without_small_faces_are_detected_once(t1_bytes: bytes) -> None:
    detector = models.face_detector()
    with_pass = stages.landmarks_from_bytes(t1_bytes, detector, 10**8, 640, small_faces_side=1920)
    without = stages.landmarks_from_bytes(t1_bytes, detector, 10**8, 640, small_faces_side=0)
    assert with_pass["faces"] == without["faces"] and len(without["faces"]) == 6
