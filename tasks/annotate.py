"""Drawing the merged result on the image: ``output/<key>.annotated.jpg``."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from tasks.shared.imaging import RGBImage

BOX = (40, 220, 70)
POINT = (255, 60, 60)
TEXT = (255, 255, 255)


def label(face: dict[str, Any]) -> str:
    """``Female 28`` (or ``Unknown 28``); empty when the age/gender stage missed the face."""
    if face.get("gender") is None:
        return ""
    return f"{face['gender']} {face['age']:.0f}"


def draw(image: RGBImage, faces: list[dict[str, Any]]) -> RGBImage:
    """A copy of ``image`` with each face's box, landmark points and label."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for face in faces:
        box = face["box"]
        top_left = (round(box["x1"]), round(box["y1"]))
        cv2.rectangle(canvas, top_left, (round(box["x2"]), round(box["y2"])), BOX, thickness)
        for x, y in face["landmarks"]:
            cv2.circle(canvas, (round(x), round(y)), thickness + 1, POINT, -1)
        text = label(face)
        if text:
            scale = 0.4 * thickness + 0.2
            (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            x = max(0, min(top_left[0], canvas.shape[1] - width))  # keep the label inside the picture
            y = max(height + baseline, top_left[1])
            cv2.rectangle(canvas, (x, y - height - baseline), (x + width, y), BOX, -1)
            cv2.putText(canvas, text, (x, y - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, thickness, cv2.LINE_AA)
    return canvas
