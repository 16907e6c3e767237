"""Valence/arousal are derived from class probabilities with Russell's circumplex coordinates."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from facephi_ros.emotion.valence_arousal import CIRCUMPLEX, valence_arousal

FER7 = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def test_one_hot_gives_the_class_point():
    for k, c in enumerate(FER7):
        p = np.eye(7)[k]
        assert valence_arousal(p, FER7) == CIRCUMPLEX[c]
    assert valence_arousal([1, 0, 0], ["happy", "sad", "neutral"])[0] > 0.8
    assert valence_arousal([0, 1, 0], ["happy", "sad", "neutral"])[0] < -0.6


def test_mixture_is_the_weighted_mean():
    v, a = valence_arousal([0.5, 0.5, 0.0], ["happy", "sad", "neutral"])
    assert math.isclose(v, (0.83 - 0.65) / 2) and math.isclose(a, (0.53 - 0.27) / 2)


def test_unknown_is_nan():
    assert all(math.isnan(x) for x in valence_arousal([0.5, 0.5], ["happy", "bored"]))
    assert all(math.isnan(x) for x in valence_arousal([np.nan, 1.0], ["happy", "sad"]))
    assert not math.isnan(valence_arousal([1.0, 0.0], ["happy", "bored"])[0])  # zero weight: fine


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=7, max_size=7).filter(lambda p: sum(p) > 1e-6))
def test_always_in_range(p):
    v, a = valence_arousal(np.array(p) / sum(p), FER7)
    assert -1 <= v <= 1 and -1 <= a <= 1
