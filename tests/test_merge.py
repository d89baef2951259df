"""Matching faces of the two stages and building the output document (no broker)."""

from __future__ import annotations

from tasks.shared.document import build_document, match_faces


def face(x1: float, y1: float, x2: float, y2: float, **extra) -> dict:
    return {"box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": 0.9}, **extra}


def lm(*box: float) -> dict:
    return face(*box, points=[[box[0] + 1, box[1] + 1]] * 5)


def ag(*box: float, gender: str = "Female", age: float = 30) -> dict:
    return face(*box, age=age, age_confidence=0.5, gender=gender, gender_confidence=0.9)


def stage(faces: list[dict], **extra) -> dict:
    return {"status": "Success", "error": "", "runtime": 0.1, "faces": faces, **extra}


def test_matches_by_overlap_regardless_of_order() -> None:
    landmarks = [lm(0, 0, 10, 10), lm(100, 100, 120, 120)]
    agegender = [ag(101, 99, 121, 119), ag(1, 1, 11, 11)]
    assert match_faces(landmarks, agegender) == [(0, 1), (1, 0)]


def test_faces_found_by_one_stage_are_kept() -> None:
    landmarks = [lm(0, 0, 10, 10), lm(50, 50, 60, 60)]
    agegender = [ag(0, 0, 10, 10), ag(200, 200, 230, 230)]
    assert match_faces(landmarks, agegender) == [(0, 0), (1, None), (None, 1)]


def test_low_overlap_is_not_a_match() -> None:
    assert match_faces([lm(0, 0, 10, 10)], [ag(8, 8, 18, 18)]) == [(0, None), (None, 0)]


def test_document_keeps_the_original_shape_and_adds_faces() -> None:
    doc = build_document(
        "k" * 64,
        "/out/k.jpg",
        stage([lm(0, 0, 10, 10)], point_scheme="5-point"),
        {"agegender": stage([ag(0, 0, 10, 10, gender="Male", age=41), ag(50, 50, 70, 70)])},
    )
    assert doc["redis_key"] == "k" * 64
    assert doc["image_path"] == "/out/k.jpg"
    assert doc["status"] == "Success"
    assert doc["results"]["landmark_service"]["landmarks"] == [[0, 0, 10, 10]]
    assert doc["results"]["agegender_service"] == {"age": [41, 30], "gender": ["Male", "Female"]}
    assert [f["found_by"] for f in doc["faces"]] == ["both", "agegender"]
    first = doc["faces"][0]
    assert first["gender"] == "Male" and first["age"] == 41 and len(first["landmarks"]) == 5
    assert doc["faces"][1]["landmarks"] == []


def test_every_per_face_stage_adds_its_values_to_the_faces() -> None:
    doc = build_document(
        "k", "/k.jpg",
        stage([lm(0, 0, 10, 10), lm(50, 50, 60, 60)]),
        {
            "agegender": stage([ag(0, 0, 10, 10, gender="Male", age=41), ag(50, 50, 60, 60)]),
            "smile": stage([face(0, 0, 10, 10, smile=0.9, mood="happy")]),  # a stage added as data
        },
    )
    first, second = doc["faces"]
    assert (first["gender"], first["smile"], first["mood"], first["found_by"]) == ("Male", 0.9, "happy", "both")
    assert second["gender"] == "Female" and "smile" not in second and second["found_by"] == "landmark"
    assert set(doc["stages"]) == {"landmark", "agegender", "smile"} and doc["status"] == "Success"
    missing = build_document("k", "/k.jpg", stage([]), {"agegender": stage([]), "smile": None})
    assert missing["status"] == "Failure" and missing["stages"]["smile"]["error"] == "no smile result in Redis"


def test_missing_or_failed_stage_makes_the_document_a_failure() -> None:
    doc = build_document("k", "/k.jpg", None, {"agegender": stage([])})
    assert doc["status"] == "Failure"
    assert doc["stages"]["landmark"]["status"] == "Missing"
    failed = build_document("k", "/k.jpg", stage([]), {"agegender": {"status": "Failure", "error": "boom", "runtime": 0, "faces": []}})
    assert failed["status"] == "Failure"
    assert failed["stages"]["agegender"]["error"] == "boom"


def test_annotation_draws_boxes_points_and_labels() -> None:
    import numpy as np

    from tasks.annotate import BOX, draw, label

    image = np.zeros((100, 120, 3), dtype=np.uint8)
    faces = [
        {"box": {"x1": 20, "y1": 30, "x2": 60, "y2": 80, "score": 0.9}, "landmarks": [[40, 50]], "gender": "Female", "age": 31.4},
        {"box": {"x1": 70, "y1": 10, "x2": 110, "y2": 40, "score": 0.9}, "landmarks": [], "gender": None, "age": None},
    ]
    drawn = draw(image, faces)
    assert image.max() == 0  # the input is left alone
    assert tuple(drawn[80, 40]) == BOX and tuple(drawn[25, 110]) == BOX
    assert drawn[50, 40, 0] > 200  # the landmark point
    assert label(faces[0]) == "Female 31" and label(faces[1]) == ""
