"""The ROS4HRI (REP-155) view of facephi_ros faces, without ROS: identifiers, regions of
interest and expressions. facephi_ros/nodes/hri_bridge_node.py publishes what this computes.

- Identifiers: REP-155 asks for unique, opaque face ids that are valid ROS name tokens. Each
  track of the face-mesh node gets a random 5-character id (a letter, then letters and digits)
  when first seen; it keeps it while tracked and loses it when unseen for `forget_after`
  seconds. A face that comes back later is a new track with a new id, as REP-155 expects of a
  face detector without recognition.
- Regions of interest: the face's bounding box normalised to [0, 1] by the image size.
- Expressions: our FER2013 classes mapped to hri_msgs/Expression constants (names of the
  constants, so that this module needs no hri_msgs).
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

# FER2013 class -> name of the hri_msgs/msg/Expression constant
EXPRESSION_OF = {
    "angry": "ANGRY",
    "disgust": "DISGUSTED",
    "fear": "SCARED",
    "happy": "HAPPY",
    "neutral": "NEUTRAL",
    "sad": "SAD",
    "surprise": "SURPRISED",
}

ID_LENGTH = 5
_FIRST = string.ascii_lowercase
_REST = string.ascii_lowercase + string.digits


def expression_name(label: str) -> str | None:
    """The hri_msgs Expression constant's name for one of our labels (None: no such expression)."""
    return EXPRESSION_OF.get(label)


def normalized_roi(x: float, y: float, w: float, h: float, image_w: int, image_h: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a pixel box, normalised by the image size and clipped to [0, 1]."""
    if image_w <= 0 or image_h <= 0:
        raise ValueError(f"image size {image_w}x{image_h} is not positive")

    def clip(v: float) -> float:
        return min(1.0, max(0.0, float(v)))

    return clip(x / image_w), clip(y / image_h), clip((x + w) / image_w), clip((y + h) / image_h)


@dataclass
class HriFace:
    hri_id: str
    track_id: int
    last_seen: float
    roi: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    stamp: object = None
    expression: dict = field(default_factory=dict)


class FaceRegistry:
    """Track ids of the face-mesh node <-> REP-155 face ids, with the faces' latest data."""

    def __init__(self, forget_after: float = 1.0, seed: int | None = None):
        self.forget_after = forget_after
        self.faces: dict[int, HriFace] = {}  # track id -> face
        self._rng = random.Random(seed)
        self._used: set[str] = set()

    def _new_id(self) -> str:
        while True:
            s = self._rng.choice(_FIRST) + "".join(self._rng.choice(_REST) for _ in range(ID_LENGTH - 1))
            if s not in self._used:
                self._used.add(s)
                return s

    def see(self, track_id: int, now: float) -> tuple[HriFace, bool]:
        """The face of a track seen now (created when new: second value True)."""
        face = self.faces.get(track_id)
        if face is None:
            face = self.faces[track_id] = HriFace(self._new_id(), track_id, now)
            return face, True
        face.last_seen = now
        return face, False

    def forget(self, now: float) -> list[HriFace]:
        """Remove and return the faces unseen for more than forget_after seconds."""
        gone = [f for f in self.faces.values() if now - f.last_seen > self.forget_after]
        for f in gone:
            del self.faces[f.track_id]
        return gone

    def ids(self) -> list[str]:
        return [f.hri_id for f in self.faces.values()]
