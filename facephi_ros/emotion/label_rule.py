"""The published label: a calm rule over the model's probabilities (ROS-free).

A behaviour layer acts on label changes, so a label that flickers between two close classes makes
a robot twitch. The rule here decides only the label; the probabilities a message carries stay
the model's own.

Per face, the label in force changes to another class when that class has led it without
interruption by at least `margin` (in probability) for at least `hold_s` seconds, and its lead
summed over that time has reached `evidence` (probability x seconds). The lead is measured on the
probabilities smoothed with an exponential moving average of time constant `smooth_s` (0: the raw
probabilities). A face's first frame takes the model's top class. All four 0 (`ARGMAX`) gives the
plain argmax.

The evidence term makes the wait depend on how clear the change is: with evidence 0.05 a class
that leads by 0.5 takes over after 0.1 s, one that leads by 0.05 after 1 s, and a face that sits
between two classes, whose leader changes before either lead adds up, keeps its label. Time is
counted from the challenger's first leading frame, as for the hold, so one frame alone never
switches the label, however long the gap before it; repeated stamps add no time.

Defaults were chosen on a labelled stream of held-out training faces (training/tune_label_rule.py,
docs/lstm.md): among the rules that still follow at least 97% of the true changes that the model's
own argmax follows within 1 s, and that change at most 0.5 times a minute more often than the
calmest of them, the one whose label is right on the most frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelRuleConfig:
    margin: float = 0.0
    hold_s: float = 0.0
    smooth_s: float = 0.0
    evidence: float = 0.05

    def __post_init__(self):
        for k in ("margin", "hold_s", "smooth_s", "evidence"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"label rule {k} must be a finite number >= 0, got {v!r}")
        if self.margin >= 1:
            raise ValueError(f"label rule margin must be below 1 (a probability lead), got {self.margin}")


ARGMAX = LabelRuleConfig(0.0, 0.0, 0.0, 0.0)  # the model's own top class, frame by frame


class _FaceLabel:
    __slots__ = ("label", "smooth", "t", "candidate", "since", "lead_s")

    def __init__(self, probs: np.ndarray, t: float):
        self.label = int(np.argmax(probs))
        self.smooth = probs.astype(np.float64)
        self.t = t
        self.candidate = -1
        self.since = t
        self.lead_s = 0.0


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
        dt = max(0.0, t - s.t)  # a stamp that goes back counts no time
        s.t = max(s.t, t)
        if c.smooth_s > 0:
            a = 1.0 - math.exp(-dt / c.smooth_s)
            s.smooth += a * (probs - s.smooth)
        else:
            s.smooth = probs
        leader = int(np.argmax(s.smooth))
        lead = float(s.smooth[leader] - s.smooth[s.label])
        if leader == s.label or lead < c.margin:
            s.candidate = -1
            return s.label
        if leader != s.candidate:  # its lead starts now: the time before this frame is not its own
            s.candidate, s.since, s.lead_s = leader, t, 0.0
        else:
            s.lead_s += lead * dt
        if t - s.since >= c.hold_s - 1e-9 and s.lead_s >= c.evidence - 1e-12:
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
