"""Valence and arousal DERIVED from class probabilities (not learned from data).

Each class gets a point of Russell's circumplex of affect (Russell, J. A. (1980). A circumplex
model of affect. Journal of Personality and Social Psychology, 39(6), 1161-1178): the position
of the nearest of Russell's affect words, as digitised from his figure and rounded to 0.01.
The estimate is the probability-weighted mean of those points, so it always lies in [-1, 1]:

    valence = sum_c p_c * v_c        arousal = sum_c p_c * a_c

Russell's words have no 'disgusted'; disgust sits midway between 'annoyed' (-0.55, 0.41) and
'miserable' (-0.70, -0.08). 'neutral' is the origin. See docs/valence_arousal.md.
"""
from __future__ import annotations

import numpy as np

CIRCUMPLEX = {
    # class: (valence, arousal), Russell's word in brackets
    "happy": (0.83, 0.53),      # happy
    "surprise": (0.16, 0.89),   # astonished
    "angry": (-0.52, 0.58),     # angry
    "fear": (-0.34, 0.64),      # afraid
    "disgust": (-0.62, 0.17),   # between annoyed and miserable
    "sad": (-0.65, -0.27),      # sad
    "neutral": (0.0, 0.0),      # origin
}


def class_coordinates(classes: list[str]) -> np.ndarray:
    """(C, 2) circumplex points; NaN rows for classes with no known position."""
    return np.array([CIRCUMPLEX.get(c.lower(), (np.nan, np.nan)) for c in classes], np.float64)


def valence_arousal(probs, classes: list[str]) -> tuple[float, float]:
    """Probability-weighted circumplex position; (NaN, NaN) when a class with probability > 0
    has no known position or the probabilities are not finite."""
    p = np.asarray(probs, np.float64)
    xy = class_coordinates(classes)
    if p.shape != (len(classes),) or not np.isfinite(p).all():
        return float("nan"), float("nan")
    used = p > 0
    if np.isnan(xy[used]).any():
        return float("nan"), float("nan")
    p = p / p.sum() if p.sum() > 0 else p
    v, a = (p[used, None] * xy[used]).sum(0)
    return float(np.clip(v, -1, 1)), float(np.clip(a, -1, 1))
