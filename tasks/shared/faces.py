"""What a face is, for every layer: its box, its landmark points, its age and gender.

The detectors produce these, the stages pass them on, and the output document matches
faces by their boxes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the upright image, with the detector's score."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def iou(self, other: Box) -> float:
        """Intersection over union of two boxes (0 when they do not overlap)."""
        width = min(self.x2, other.x2) - max(self.x1, other.x1)
        height = min(self.y2, other.y2) - max(self.y1, other.y1)
        if width <= 0 or height <= 0:
            return 0.0
        inter = width * height
        return inter / (self.area + other.area - inter)


@dataclass(frozen=True)
class DetectedFace:
    """One face from a detector: its box and its landmark points, in the scheme's order."""

    box: Box
    points: tuple[Point, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"box": asdict(self.box), "points": [list(p) for p in self.points]}

    def scaled(self, factor: float) -> DetectedFace:
        """The same face in an image ``factor`` times larger."""
        if factor == 1.0:
            return self
        b = self.box
        return DetectedFace(
            Box(b.x1 * factor, b.y1 * factor, b.x2 * factor, b.y2 * factor, b.score),
            tuple((x * factor, y * factor) for x, y in self.points),
        )

    def shifted(self, dx: float, dy: float) -> DetectedFace:
        """The same face in a picture whose origin lies ``(dx, dy)`` up and left of this one's."""
        b = self.box
        return DetectedFace(
            Box(b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy, b.score),
            tuple((x + dx, y + dy) for x, y in self.points),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectedFace:
        return cls(Box(**data["box"]), tuple((float(x), float(y)) for x, y in data["points"]))


@dataclass(frozen=True)
class AgeGender:
    """Age (years) and gender ("Male"/"Female") of one face, each with a 0..1 confidence."""

    age: float
    age_confidence: float
    gender: str
    gender_confidence: float
