"""The published label: a calm rule over the model's probabilities (ROS-free).

A behaviour layer acts on label changes, so a label that flickers between two close classes makes
a robot twitch. The rule here decides only the label; the probabilities a message carries stay
the model's own.

Per face, the label in force changes to another class when that class has led it by at least
`margin` (in probability) for `hold_s` seconds without interruption. The lead is measured on the
probabilities smoothed with an exponential moving average of time constant `smooth_s` (0: the raw
probabilities). A face's first frame takes the model's top class. `margin=0, hold_s=0,
smooth_s=0` gives the plain argmax.

Defaults were chosen on a labelled stream of held-out training faces (training/tune_label_rule.py,
docs/lstm.md): the fewest changes while at least 97% of the true changes that the model's own
argmax follows are still followed within 1 s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelRuleConfig:
    margin: float = 0.05
    hold_s: float = 0.4
    smooth_s: float = 0.0

    def __post_init__(self):
        for k in ("margin", "hold_s", "smooth_s"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"label rule {k} must be a finite number >= 0, got {v!r}")
        if self.margin >= 1:
            raise ValueError(f"label rule margin must be below 1 (a probability lead), got {self.margin}")


class _FaceLabel:
    __slots__ = ("label", "smooth", "t", "candidate", "since")

    def __init__(self, probs: np.ndarray, t: float):
        self.label = int(np.argmax(probs))
        self.smooth = probs.astype(np.float64)
        self.t = t
        self.candidate = -1
        self.since = t


class LabelRule:
    """Per-face label hysteresis; update() returns the class index in force after this frame."""

    def __init__(self, cfg: LabelRuleConfig | None = None):
        self.cfg = cfg or LabelRuleConfig()
        self.faces: dict[int, _FaceLabel] = {}

    def update(self, face_id: int, probs: np.ndarray, t: float) -> int:
        probs = np.asarray(probs, np.float64)
        s = self.faces.get(face_id)
        if not np.all(np.isfinite(probs)):  # keep the label in force; never adopt a NaN's argmax
            return s.label if s is not None else int(np.nanargmax(np.nan_to_num(probs, nan=-1.0)))
        if s is None:
            self.faces[face_id] = _FaceLabel(probs, t)
            return self.faces[face_id].label
        c = self.cfg
        dt = max(0.0, t - s.t)
        s.t = t
        if c.smooth_s > 0:
            a = 1.0 - math.exp(-dt / c.smooth_s)
            s.smooth += a * (probs - s.smooth)
        else:
            s.smooth = probs
        leader = int(np.argmax(s.smooth))
        if leader == s.label or s.smooth[leader] - s.smooth[s.label] < c.margin:
            s.candidate = -1
            return s.label
        if leader != s.candidate:
            s.candidate, s.since = leader, t
        if t - s.since >= c.hold_s - 1e-9:
            s.label, s.candidate = leader, -1
        return s.label

    def forget(self, face_ids) -> None:
        for k in face_ids:
            self.faces.pop(k, None)

    def clear(self) -> None:
        self.faces.clear()


def apply_rule(probs: np.ndarray, times: np.ndarray, cfg: LabelRuleConfig, face_id: int = 0) -> np.ndarray:
    """The labels the rule publishes for one face's stream of probabilities (T, C) at times (T,)."""
    rule = LabelRule(cfg)
    return np.array([rule.update(face_id, p, float(t)) for p, t in zip(probs, times)], dtype=int)
