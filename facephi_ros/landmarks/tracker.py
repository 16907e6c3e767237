"""Multi-face tracker: stable ids across frames from landmark boxes and face shape.

Each track predicts its box centre with a constant-velocity model (velocity in pixels per
second, so dropped frames do not confuse it). Detections are assigned to tracks by the
Hungarian method on a cost that combines
  * the distance between predicted and detected centres, in units of the face's width,
  * the log ratio of the face sizes,
  * the distance between face-shape signatures (landmark ratios that do not depend on
    position, scale or small pose changes): two faces that pass each other differ here even
    when their boxes touch.
Pairs above `max_cost` are never matched. A new track is tentative (id 0) until it has been
matched in `min_hits` consecutive frames: single-frame false detections never get an id. A
track not matched for `max_missed` frames is forgotten; its face gets a new id when it comes back.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

# Landmark pairs whose distances, divided by the inter-ocular distance, describe a face's shape.
_OUTER_EYES = (33, 263)
_SIGNATURE_PAIRS = np.array([
    (1, 152),    # nose tip - chin
    (10, 152),   # forehead - chin (face height)
    (234, 454),  # cheek to cheek (face width)
    (61, 291),   # mouth corners
    (1, 10),     # nose tip - forehead
    (133, 362),  # inner eye corners
    (4, 13),     # nose - upper lip
    (70, 300),   # outer brows
])


def shape_signature(landmarks: np.ndarray) -> np.ndarray:
    pts = landmarks[:, :2].astype(np.float64)
    iod = np.linalg.norm(pts[_OUTER_EYES[0]] - pts[_OUTER_EYES[1]]) + 1e-9
    d = np.linalg.norm(pts[_SIGNATURE_PAIRS[:, 0]] - pts[_SIGNATURE_PAIRS[:, 1]], axis=1)
    return d / iod


@dataclass
class Track:
    id: int
    center: np.ndarray
    size: float
    signature: np.ndarray
    last_t: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    missed: int = 0
    streak: int = 0
    hits: deque = field(default_factory=lambda: deque(maxlen=10))

    def predict(self, t: float) -> np.ndarray:
        dt = min(max(t - self.last_t, 0.0), 1.0)
        return self.center + self.velocity * dt

    @property
    def score(self) -> float:
        return float(np.mean(self.hits)) if self.hits else 0.0


class FaceTracker:
    def __init__(self, max_missed: int = 15, min_hits: int = 2, max_cost: float = 1.5, size_weight: float = 1.0,
                 shape_weight: float = 2.0, velocity_smoothing: float = 0.5):
        self.max_missed = max_missed
        self.min_hits = max(1, min_hits)
        self.max_cost = max_cost
        self.size_weight = size_weight
        self.shape_weight = shape_weight
        self.alpha = velocity_smoothing
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()

    def update(self, boxes: np.ndarray, landmarks: list[np.ndarray], t: float) -> tuple[list[int], list[float]]:
        """Assign ids to this frame's faces. boxes: (N, 4) x, y, w, h in pixels; landmarks: N
        arrays (478, 3); t: frame time in seconds. Returns (ids, scores) in detection order; id 0
        marks a tentative face (not yet seen in min_hits consecutive frames)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        n = len(boxes)
        centers = boxes[:, :2] + boxes[:, 2:] / 2
        sizes = np.maximum(np.sqrt(boxes[:, 2] * boxes[:, 3]), 1.0)
        sigs = [shape_signature(lm) for lm in landmarks]
        assigned: list[Track | None] = [None] * n
        if self.tracks and n:
            cost = np.empty((len(self.tracks), n))
            for i, tr in enumerate(self.tracks):
                pred = tr.predict(t)
                for j in range(n):
                    scale = max(tr.size, sizes[j])
                    dist = np.linalg.norm(pred - centers[j]) / scale
                    size = abs(np.log(sizes[j] / tr.size))
                    shape = float(np.mean(np.abs(sigs[j] - tr.signature)))
                    cost[i, j] = dist + self.size_weight * size + self.shape_weight * shape
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols):
                if cost[i, j] <= self.max_cost:
                    assigned[j] = self.tracks[i]
        matched = {id(a) for a in assigned if a is not None}
        for tr in self.tracks:
            if id(tr) not in matched:
                tr.missed += 1
                tr.streak = 0
                tr.hits.append(0)
        for j in range(n):
            tr = assigned[j]
            if tr is None:
                tr = Track(0, centers[j].copy(), float(sizes[j]), sigs[j], t)
                self.tracks.append(tr)
            else:
                dt = t - tr.last_t
                if dt > 1e-6:
                    v = (centers[j] - tr.center) / dt
                    tr.velocity = self.alpha * v + (1 - self.alpha) * tr.velocity
                tr.center = centers[j].copy()
                tr.size = 0.7 * tr.size + 0.3 * float(sizes[j])
                tr.signature = 0.8 * tr.signature + 0.2 * sigs[j]
                tr.last_t = t
                tr.missed = 0
            tr.hits.append(1)
            tr.streak += 1
            if tr.id == 0 and tr.streak >= self.min_hits:
                tr.id = self._next_id
                self._next_id += 1
            assigned[j] = tr
        # Tentative tracks die at their first miss; confirmed ones after max_missed misses.
        self.tracks = [tr for tr in self.tracks if tr.missed <= (self.max_missed if tr.id else 0)]
        return [tr.id for tr in assigned], [tr.score for tr in assigned]
