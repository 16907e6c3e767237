"""The published label's rule: hysteresis over the model's probabilities (ROS-free)."""
import numpy as np
import pytest

from facephi_ros.emotion.label_rule import ARGMAX, LabelRule, LabelRuleConfig, apply_rule

RATE = 30.0


def stream(*segments):
    """Probabilities (T, 3) from (class, frames, lead, runner-up) segments: the class leads the
    runner-up by `lead`; the third class has 0.1."""
    rows = []
    for cls, n, lead, second in segments:
        p = np.full(3, 0.1)
        p[cls], p[second] = (0.9 + lead) / 2, (0.9 - lead) / 2
        rows += [p] * n
    probs = np.array(rows)
    return probs, np.arange(len(probs)) / RATE


def test_zero_rule_is_the_argmax():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), 300)
    labels = apply_rule(probs, np.arange(300) / RATE, ARGMAX)
    assert (labels == probs.argmax(1)).all()


def test_a_blip_is_ignored_and_a_lasting_change_is_followed_after_the_hold():
    cfg = LabelRuleConfig(margin=0.1, hold_s=0.3, smooth_s=0.0, evidence=0.0)
    probs, t = stream((0, 30, 0.4, 1), (1, 3, 0.4, 0), (0, 30, 0.4, 1), (2, 60, 0.4, 0))
    labels = apply_rule(probs, t, cfg)
    assert (labels[:63] == 0).all()  # three frames (0.1 s) of another class: no change
    first = int(np.argmax(labels == 2))
    assert labels[-1] == 2 and first == 63 + 9  # followed once it has led for 0.3 s (9 frames at 30 Hz)
    assert int((np.diff(labels) != 0).sum()) == 1


def test_a_lead_below_the_margin_never_switches():
    cfg = LabelRuleConfig(margin=0.2, hold_s=0.0, evidence=0.0)
    probs, t = stream((0, 10, 0.5, 1), (1, 100, 0.1, 0))
    assert (apply_rule(probs, t, cfg) == 0).all()
    probs, t = stream((0, 10, 0.5, 1), (1, 100, 0.3, 0))
    assert apply_rule(probs, t, cfg)[-1] == 1


def test_faces_are_independent_and_forgotten():
    rule = LabelRule(LabelRuleConfig(margin=0.1, hold_s=1.0, evidence=0.0))
    a, b = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1])
    assert rule.update(1, a, 0.0) == 0 and rule.update(2, b, 0.0) == 1
    assert rule.update(1, b, 0.1) == 0  # face 1 holds its label; face 2 keeps its own
    rule.forget([1])
    assert rule.update(1, b, 0.2) == 1  # a forgotten face starts afresh with the top class


def test_nan_probabilities_keep_the_label():
    rule = LabelRule(ARGMAX)
    assert rule.update(1, np.array([0.1, 0.7, 0.2]), 0.0) == 1
    assert rule.update(1, np.array([np.nan, 0.1, 0.1]), 0.1) == 1
    assert rule.update(1, np.array([0.9, 0.05, 0.05]), 0.2) == 0


def test_smoothing_delays_a_change_by_about_its_time_constant():
    probs, t = stream((0, 30, 0.6, 1), (1, 60, 0.6, 0))
    fast = int(np.argmax(apply_rule(probs, t, LabelRuleConfig(0.05, 0.0, 0.0, 0.0)) == 1))
    slow = int(np.argmax(apply_rule(probs, t, LabelRuleConfig(0.05, 0.0, 0.3, 0.0)) == 1))
    assert fast == 30 and 30 + 3 <= slow <= 30 + 15


def test_evidence_waits_longer_for_a_weaker_lead():
    """The lead summed over time from the challenger's first leading frame must reach `evidence`:
    a lead of 0.6 (0.02 a frame at 30 Hz) takes over on its fourth frame, a lead of 0.1 on its
    sixteenth (0.5 s later)."""
    cfg = LabelRuleConfig(evidence=0.05)
    for lead, frames in ((0.6, 4), (0.1, 16)):
        probs, t = stream((0, 30, 0.6, 1), (1, 60, lead, 0))
        labels = apply_rule(probs, t, cfg)
        assert int(np.argmax(labels == 1)) == 30 + frames - 1, lead
        assert (labels[30 + frames - 1:] == 1).all()


def test_evidence_keeps_the_label_of_a_face_between_classes():
    """Two classes taking turns to lead the label in force by 0.1 for 0.1 s each: neither adds up
    the evidence, so the label stays; the argmax changes every 0.1 s."""
    turns = [(1 + k % 2, 3, 0.1, 0) for k in range(20)]
    probs, t = stream((0, 30, 0.6, 1), *turns)
    assert (apply_rule(probs, t, LabelRuleConfig(evidence=0.05)) == 0).all()
    assert int((np.diff(apply_rule(probs, t, ARGMAX)) != 0).sum()) == 20
    probs, t = stream((0, 30, 0.6, 1), (1, 30, 0.1, 0))  # the same lead held by one class: followed
    assert apply_rule(probs, t, LabelRuleConfig(evidence=0.05))[-1] == 1


def test_the_shipped_rule_ignores_blips_and_gaps():
    """With the shipped defaults: two frames of a strong challenger at 30 Hz, one frame at 10 Hz,
    or one frame after the face was unseen for 1.5 s never switch the label; the time before a
    challenger's first leading frame is not its own."""
    a, b = np.array([0.8, 0.1, 0.1]), np.array([0.05, 0.9, 0.05])
    probs, t = stream((0, 30, 0.6, 1), (1, 2, 0.8, 0), (0, 30, 0.6, 1))
    assert (apply_rule(probs, t, LabelRuleConfig()) == 0).all()
    rule = LabelRule(LabelRuleConfig())
    assert rule.update(1, a, 0.0) == 0 and rule.update(1, b, 0.1) == 0 and rule.update(1, a, 0.2) == 0  # 10 Hz blip
    assert rule.update(1, b, 1.7) == 0  # after a gap: one frame is not enough
    assert rule.update(1, b, 1.8) == 1  # a second frame 0.1 s later with a lead of 0.85 is


def test_evidence_restarts_when_the_label_wins_back_a_frame():
    cfg = LabelRuleConfig(evidence=0.05)
    # 12 frames of a lead of 0.1 (0.037 summed), one frame where the label leads, 12 more: never 0.05
    probs, t = stream((0, 30, 0.6, 1), (1, 12, 0.1, 0), (0, 1, 0.1, 1), (1, 12, 0.1, 0))
    assert (apply_rule(probs, t, cfg) == 0).all()
    probs, t = stream((0, 30, 0.6, 1), (1, 25, 0.1, 0))  # the same 25 frames without the break: followed
    assert apply_rule(probs, t, cfg)[-1] == 1


def test_a_stamp_that_goes_back_adds_no_time():
    rule = LabelRule(LabelRuleConfig(evidence=0.05))
    a, b = np.array([0.8, 0.1, 0.1]), np.array([0.25, 0.45, 0.3])  # a lead of 0.2: 0.25 s to reach 0.05
    rule.update(1, a, 1.0)
    labels = [rule.update(1, b, t) for t in (1.1, 1.0, 1.05, 1.1, 1.0, 1.1, 1.2, 1.3, 1.4)]
    # counted from 1.1 s on real time only: 0.06 at 1.4 s (the stamps going back would add 0.04 by 1.2 s)
    assert labels[:-1] == [0] * 8 and labels[-1] == 1


def test_the_config_file_ships_the_rules_defaults():
    """config/facephi.yaml's label_* values are LabelRuleConfig()'s: the node and the ROS-free
    estimator publish the same label."""
    from dataclasses import asdict

    import yaml

    from facephi_ros.paths import shipped

    p = yaml.safe_load((shipped("config") / "facephi.yaml").read_text())["emotion"]["ros__parameters"]
    d = asdict(LabelRuleConfig())
    assert {k: p[f"label_{k}"] for k in d} == d


@pytest.mark.parametrize("bad", [dict(margin=-0.1), dict(hold_s=float("nan")), dict(smooth_s=-1), dict(margin=1.0),
                                 dict(evidence=float("inf"))])
def test_bad_settings_are_refused_with_one_line(bad):
    with pytest.raises(ValueError) as e:
        LabelRuleConfig(**bad)
    assert "\n" not in str(e.value) and "label rule" in str(e.value)


def test_estimator_publishes_the_rule_label_with_the_models_own_probabilities():
    from facephi_ros.emotion.estimator import EmotionEstimator

    est_rule = EmotionEstimator(label_rule=LabelRuleConfig(margin=0.99, hold_s=100.0))
    est_raw = EmotionEstimator(label_rule=ARGMAX)
    rng = np.random.default_rng(3)
    first, raw_labels = None, set()
    for k in range(60):  # frames whose features change a lot: the model's own label moves
        lm = rng.random((478, 3)).astype(np.float32)
        bs = rng.random(52).astype(np.float32)
        a = est_rule.update([(1, lm, bs, np.eye(4))], 1.0, 1.0, k / RATE, now=k / RATE)[0]
        b = est_raw.update([(1, lm, bs, np.eye(4))], 1.0, 1.0, k / RATE, now=k / RATE)[0]
        assert np.allclose(a.probs, b.probs)  # the rule never touches the probabilities
        assert b.label == est_raw.classes[int(b.probs.argmax())]
        assert a.confidence == pytest.approx(float(a.probs[est_rule.classes.index(a.label)]))
        first = first or a.label
        assert a.label == first  # an unreachable margin: the first label stays
        raw_labels.add(b.label)
    assert len(raw_labels) > 1, "the stream never moved the model's own label: the test shows nothing"
    est_rule.reset()
    assert not est_rule.windows and not est_rule.rule.faces
