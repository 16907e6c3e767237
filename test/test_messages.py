"""Custom messages cross process boundaries intact (real rclpy, Fast DDS on localhost)."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray

from facephi_ros.landmarks.landmarker import BLENDSHAPE_NAMES, FaceMesh
from facephi_ros.nodes.convert import (
    MessageError,
    face_to_msg,
    make_array,
    make_estimate,
    msg_to_arrays,
)


def echo(probe, kind, msg):
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("echo_node.py")), kind.__name__],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "echo ready"
        probe.received["/echo/out"] = []
        probe.subscribe(kind, "/echo/out")
        pub = probe.publisher(kind, "/echo/in")
        assert probe.wait_subscribers(pub) and probe.wait_publishers("/echo/out")
        t_end = time.monotonic() + 30
        while not probe.messages("/echo/out") and time.monotonic() < t_end:
            pub.publish(msg)  # again until one comes back: the echo's own discovery may lag ours
            probe.wait_for("/echo/out", 1, timeout=0.5)
        out = probe.messages("/echo/out")
        assert out, "nothing came back"
        return out[0]
    finally:
        # the echo's exit is not under test: a busy machine may take long to tear down DDS
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def random_face(rng) -> FaceMesh:
    lm = rng.random((478, 3)).astype(np.float32)
    return FaceMesh(lm, rng.random(52).astype(np.float32), rng.random((4, 4)), np.array([10, 20, 30, 40], np.float32))


def test_face_landmarks_array_round_trip(probe):
    rng = np.random.default_rng(0)
    faces = [random_face(rng), random_face(rng)]
    stamp = probe.now()
    from std_msgs.msg import Header

    header = Header(stamp=stamp, frame_id="cam_optical")
    msgs = [face_to_msg(f, 7 + i, 0.5, header, 640, 480) for i, f in enumerate(faces)]
    back = echo(probe, FaceLandmarksArray, make_array(header, 640, 480, msgs, 0.012, 3))
    assert back.header.frame_id == "cam_optical" and back.header.stamp == stamp
    assert (back.image_width, back.image_height, back.dropped_frames) == (640, 480, 3)
    assert back.processing_time == pytest.approx(0.012)
    assert [f.face_id for f in back.faces] == [7, 8]
    for f, src in zip(back.faces, faces):
        lm, bs, mat = msg_to_arrays(f)
        np.testing.assert_array_equal(lm, src.landmarks)
        np.testing.assert_array_equal(bs, src.blendshapes)
        np.testing.assert_array_equal(mat, src.matrix)
        assert list(f.blendshape_names) == list(BLENDSHAPE_NAMES)
        assert (f.bbox_x, f.bbox_y, f.bbox_width, f.bbox_height) == (10, 20, 30, 40)


def test_empty_array_round_trip(probe):
    from std_msgs.msg import Header

    back = echo(probe, FaceLandmarksArray, make_array(Header(stamp=probe.now()), 320, 240, [], 0.001, 0))
    assert back.faces == [] and back.image_width == 320


def test_emotion_estimate_round_trip(probe):
    from std_msgs.msg import Header

    e = make_estimate(Header(stamp=probe.now(), frame_id="camera"), 3, "lstm:fer7", ["happy", "sad", "neutral"],
                      [0.7, 0.1, 0.2], valence=0.6, arousal=float("nan"), description="a broad smile", window_frames=30)
    back = echo(probe, EmotionEstimate, e)
    assert back.label == "happy" and back.confidence == pytest.approx(0.7)
    assert list(back.class_names) == ["happy", "sad", "neutral"]
    np.testing.assert_allclose(back.probabilities, [0.7, 0.1, 0.2], rtol=1e-6)
    assert back.valence == pytest.approx(0.6) and math.isnan(back.arousal)
    assert back.description == "a broad smile" and back.window_frames == 30 and back.face_id == 3


def test_invalid_landmark_messages_are_rejected():
    from std_msgs.msg import Header

    rng = np.random.default_rng(1)
    m = face_to_msg(random_face(rng), 1, 1.0, Header(), 10, 10)
    m.landmarks = m.landmarks[:-3]
    with pytest.raises(MessageError, match="1431 landmark values, expected 1434"):
        msg_to_arrays(m)
    m = face_to_msg(random_face(rng), 1, 1.0, Header(), 10, 10)
    m.landmarks[5] = float("nan")
    with pytest.raises(MessageError, match="NaN or inf"):
        msg_to_arrays(m)
