"""The LSTM emotion node as a separate process: real landmarks in, /emotion out; bad input;
weight-loading errors."""
from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pytest
from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray
from rosnodes import NodeProcess, stamp_ns
from std_msgs.msg import Header

from facephi_ros.emotion.estimator import DEFAULT_MODEL_DIR
from facephi_ros.nodes.common import EMOTION_TOPIC, FACES_TOPIC
from facephi_ros.nodes.convert import face_to_msg, make_array


@pytest.fixture(scope="module")
def emotion_node(ros):
    with NodeProcess("emotion_node", "emotion") as node:
        assert node.wait_log("emotion model", 30), node.log
        yield node



def warm_up(probe, pub, face, face_id: int, topic: str = EMOTION_TOPIC) -> None:
    """Publish one face until the node answers for it on `topic`: discovery is done both ways."""
    f, w, h = face

    def one():
        header = Header(stamp=probe.now(), frame_id="camera")
        return make_array(header, w, h, [face_to_msg(f, face_id, 1.0, header, w, h)], 0.01, 0)

    assert probe.wait_subscribers(pub)
    assert probe.handshake(pub, one, topic, lambda e: e.face_id == face_id), "the node never answered"
    probe.clear(topic)  # estimates of this face still in flight are told apart by face_id


def test_estimates_per_face_and_frame(emotion_node, probe, posed):
    probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
    pub = probe.publisher(FaceLandmarksArray, FACES_TOPIC)
    warm_up(probe, pub, posed["happy"], 99)
    happy, w, h = posed["happy"]
    surprise, w2, h2 = posed["surprise"]
    stamps = []
    for k in range(24):
        header = Header(stamp=probe.now(), frame_id="camera")
        faces = [face_to_msg(happy, 1, 1.0, header, w, h), face_to_msg(surprise, 2, 1.0, header, w2, h2)]
        # both faces share one frame size here: the node normalises with the array's size
        pub.publish(make_array(header, w, h, faces[:1], 0.01, 0))
        header2 = Header(stamp=header.stamp, frame_id="camera2")
        pub.publish(make_array(header2, w2, h2, faces[1:], 0.01, 0))
        stamps.append(stamp_ns(header))
        time.sleep(1 / 30)
    assert probe.wait_until(EMOTION_TOPIC, lambda ms: min(sum(e.face_id == i for e in ms) for i in (1, 2)) >= 24, 30)
    est = probe.messages(EMOTION_TOPIC)
    by_face = {1: [e for e in est if e.face_id == 1], 2: [e for e in est if e.face_id == 2]}
    assert len(by_face[1]) == 24 and len(by_face[2]) == 24
    assert [stamp_ns(e) for e in by_face[1]] == stamps  # every frame, with the frame's stamp
    assert [e.window_frames for e in by_face[1]][:3] == [1, 2, 3] and by_face[1][-1].window_frames == 16
    last = by_face[1][-1]
    assert last.model.startswith("lstm:") and len(last.class_names) == len(last.probabilities) == 7
    assert abs(sum(last.probabilities) - 1) < 1e-4 and last.confidence == max(last.probabilities)
    assert last.label == "happy", list(zip(last.class_names, last.probabilities))
    assert last.valence > 0.3 and -1 <= last.arousal <= 1 and last.description == ""
    assert by_face[2][-1].label == "surprise", list(zip(by_face[2][-1].class_names, by_face[2][-1].probabilities))


def test_published_label_follows_the_label_rule_not_the_argmax(ros, probe, posed):
    """The label the node publishes is its label rule's (here: another class must lead for 1000 s,
    so the first label stays), while the probabilities are the model's own: a face that turns from
    a smile to surprise keeps the label 'happy', with the probability of happy as its confidence."""
    topic = EMOTION_TOPIC + "_hold"  # apart from the module's other emotion node, which answers the same faces
    with NodeProcess("emotion_node", "emotion_hold", {"label_hold_s": 1000.0}, ["-r", f"{EMOTION_TOPIC}:={topic}"]) as node:
        assert node.wait_log("emotion model", 30), node.log
        probe.subscribe(EmotionEstimate, topic)
        pub = probe.publisher(FaceLandmarksArray, FACES_TOPIC)
        warm_up(probe, pub, posed["happy"], 97, topic)
        (happy, w, h), (surprise, w2, h2) = posed["happy"], posed["surprise"]
        for k in range(40):
            header = Header(stamp=probe.now(), frame_id="camera")
            f, fw, fh = (happy, w, h) if k < 8 else (surprise, w2, h2)
            pub.publish(make_array(header, fw, fh, [face_to_msg(f, 7, 1.0, header, fw, fh)], 0.01, 0))
            time.sleep(1 / 30)
        assert probe.wait_until(topic, lambda ms: sum(e.face_id == 7 for e in ms) >= 40, 30)
    est = [e for e in probe.messages(topic) if e.face_id == 7]
    assert {e.label for e in est} == {"happy"}, [e.label for e in est]
    last = est[-1]
    top = last.class_names[int(np.argmax(last.probabilities))]
    assert top == "surprise", list(zip(last.class_names, last.probabilities))  # the model itself has moved on
    assert last.confidence == pytest.approx(last.probabilities[last.class_names.index("happy")])
    assert last.confidence < max(last.probabilities)


def test_bad_faces_are_skipped_with_one_line(emotion_node, probe, posed):
    probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
    pub = probe.publisher(FaceLandmarksArray, FACES_TOPIC)
    warm_up(probe, pub, posed["happy"], 98)
    happy, w, h = posed["happy"]
    header = Header(stamp=probe.now())
    good = face_to_msg(happy, 11, 1.0, header, w, h)
    nan = face_to_msg(happy, 12, 1.0, header, w, h)
    nan.landmarks[10] = float("nan")
    short = face_to_msg(happy, 13, 1.0, header, w, h)
    short.landmarks = short.landmarks[:100]
    zero = face_to_msg(happy, 0, 1.0, header, w, h)
    pub.publish(make_array(header, w, h, [good, nan, short, zero], 0.01, 0))
    time.sleep(0.2)
    pub.publish(make_array(header, w, h, [good], 0.01, 0))  # duplicate stamp
    # a last good face: once its estimate is here, everything published before it was handled
    # (one reliable publisher, in order), so nothing more can come for the bad ones
    later = Header(stamp=probe.now())
    pub.publish(make_array(later, w, h, [face_to_msg(happy, 14, 1.0, later, w, h)], 0.01, 0))
    assert probe.wait_until(EMOTION_TOPIC, lambda ms: any(e.face_id == 14 for e in ms), 20)
    got = [e for e in probe.messages(EMOTION_TOPIC) if e.face_id != 98]
    assert [e.face_id for e in got] == [11, 14]
    for text in ("NaN or inf", "100 landmark values, expected 1434", "face id 0 is zero", "duplicate stamps"):
        assert emotion_node.wait_log(text, 5), (text, emotion_node.log)
    assert emotion_node.alive()


def _expect_start_failure(params, *expected):
    with NodeProcess("emotion_node", "emotion_bad", params) as node:
        node.proc.wait(30)
        log = node.log
    assert node.proc.returncode == 2, log
    errors = [line for line in log.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in log, log
    for e in expected:
        assert e in errors[0], errors[0]


def test_missing_model(ros, tmp_path):
    _expect_start_failure({"model_dir": str(tmp_path / "none")}, f"{tmp_path / 'none' / 'model.json'} not found")


def test_corrupt_weights(ros, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    (d / "weights.safetensors").write_bytes(b"\x00" * 100)
    _expect_start_failure({"model_dir": str(d)}, "are corrupt")


def test_feature_layout_mismatch(ros, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    meta = json.loads((d / "model.json").read_text())
    meta["config"]["features"]["landmark_dims"] = 2
    (d / "model.json").write_text(json.dumps(meta))
    _expect_start_failure({"model_dir": str(d)}, "do not match")


@pytest.mark.parametrize("param", ["label_margin", "label_evidence"])
def test_bad_label_rule_is_refused(ros, param):
    _expect_start_failure({param: -0.5}, f"label rule {param[len('label_'):]} must be a finite number >= 0")


def test_class_list_mismatch(ros):
    _expect_start_failure({"expect_classes": ["happy", "sad", "neutral"]}, "has classes", "expected ['happy', 'sad', 'neutral']")


def test_memory_is_bounded():
    from facephi_ros.emotion.estimator import EmotionEstimator

    est = EmotionEstimator(forget_after=1.0, max_faces=5)
    rng = np.random.default_rng(0)
    lm = rng.random((478, 3)).astype(np.float32)
    for k in range(50):  # 50 different faces, each seen once
        est.update([(k + 1, lm, np.zeros(52, np.float32), np.eye(4))], 1, 1, t=k * 0.1, now=k * 0.1)
    assert len(est.windows) <= 5
    est.update([], 1, 1, t=100, now=100.0)
    assert len(est.windows) == 0
    for k in range(40):
        est.update([(1, lm, np.zeros(52, np.float32), np.eye(4))], 1, 1, t=200 + k, now=200.0 + k * 0.01)
    assert est.windows[1].frames <= est.window
    # the same id after a pause longer than forget_after (a restarted face mesh reuses ids): afresh
    again = est.update([(1, lm, np.zeros(52, np.float32), np.eye(4))], 1, 1, t=500, now=200.0 + 40 * 0.01 + 1.5)
    assert again[0].window_frames == 1
    assert not math.isnan(est.update([(1, lm, np.zeros(52, np.float32), np.eye(4))], 1, 1, 300, 200.5)[0].valence)


def test_estimator_matches_the_model_over_its_window():
    """The node's streaming path (two staggered LSTM states, one step per frame) gives exactly
    what the trained model gives over the frames it reports integrating."""
    import torch

    from facephi_ros.emotion.estimator import EmotionEstimator
    from facephi_ros.features.normalize import frame_features

    est = EmotionEstimator()
    rng = np.random.default_rng(3)
    frames = [(rng.random((478, 3)).astype(np.float32) * 0.2 + 0.4, rng.random(52).astype(np.float32), np.eye(4))
              for _ in range(40)]
    counts = []
    for k, (lm, bs, m) in enumerate(frames):
        out = est.update([(1, lm, bs, m)], 640, 480, t=k / 30, now=k / 30)[0]
        counts.append(out.window_frames)
        n = out.window_frames
        x = torch.from_numpy(np.stack([frame_features(est.features, *f, 640, 480) for f in frames[k + 1 - n:k + 1]]))
        with torch.no_grad():
            ref = torch.softmax(est.model(x[None])[0, -1], -1).numpy()
        np.testing.assert_allclose(out.probs, ref, atol=1e-5)
    assert counts[:16] == list(range(1, 17))
    assert min(counts[16:]) == 9 and max(counts[16:]) == 16  # steady state: the last 9-16 frames
