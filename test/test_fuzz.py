"""Fuzzing the nodes' message handlers with hypothesis: thousands of malformed images and
landmark arrays, zero crashes. The real node classes are built in this process (rclpy), and
their handlers are called directly with each generated message; every bad input must be
counted on /diagnostics and never raise."""
from __future__ import annotations

import array
import json
import os
from pathlib import Path

import numpy as np
import pytest
from facephi_ros.msg import FaceLandmarks, FaceLandmarksArray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image
from std_msgs.msg import Header

N_IMAGES = int(os.environ.get("FACEPHI_FUZZ_IMAGES", 1500))
N_FACES = int(os.environ.get("FACEPHI_FUZZ_FACES", 2500))
CLOCK = {"ms": 10_000_000}

floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@pytest.fixture(scope="module")
def face_mesh_node(ros):
    from facephi_ros.nodes.face_mesh_node import FaceMeshNode

    node = FaceMeshNode()
    assert node.bring_up()  # configure + activate, as autostart does
    yield node
    node.close()
    node.destroy_node()


@pytest.fixture(scope="module")
def emotion_node(ros):
    from facephi_ros.nodes.emotion_node import EmotionNode

    node = EmotionNode()
    assert node.bring_up()
    yield node
    node.close()
    node.destroy_node()


@st.composite
def images(draw):
    enc = draw(st.sampled_from(["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "8UC3", "16UC1", "32FC1", "yuv422", "", "jpeg"]))
    h = draw(st.integers(0, 64))
    w = draw(st.integers(0, 64))
    step = draw(st.one_of(st.just(w * 3), st.integers(0, 300)))
    n = draw(st.one_of(st.just(max(0, h * step)), st.integers(0, 20000)))
    m = Image(height=h, width=w, encoding=enc, step=step, data=array.array("B", draw(st.binary(min_size=n, max_size=n))))
    # stamps from a running clock: mostly forward, sometimes repeated, a little back, or far back
    CLOCK["ms"] = max(0, CLOCK["ms"] + draw(st.sampled_from([33] * 12 + [0, -5, -2000])))
    m.header.stamp.sec, m.header.stamp.nanosec = divmod(CLOCK["ms"], 1000)
    m.header.stamp.nanosec *= 1_000_000
    return m


def _report(key: str, values: dict) -> None:
    """Merge this test's figures into the fuzz report read by benchmarks/reliability.py."""
    out = Path(os.environ.get("FACEPHI_FUZZ_REPORT", "runs/fuzz_counts.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data.setdefault("cases", {})[key] = values.pop("cases")
    data.update(values, crashes=0)
    out.write_text(json.dumps(data))


def test_face_mesh_handler_never_crashes(face_mesh_node):
    """Every generated image goes through the worker's per-frame function without raising; bad
    ones are counted on /diagnostics. Counts are checked here, so the test stands alone."""
    seen = [0]

    @settings(max_examples=N_IMAGES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(images())
    def run(m):
        face_mesh_node._process(m)  # must not raise
        seen[0] += 1

    before = dict(face_mesh_node.diag.counters)
    run()
    fm = {k: v - before.get(k, 0) for k, v in face_mesh_node.diag.counters.items()}
    assert seen[0] >= N_IMAGES * 0.9
    assert fm.get("bad_images", 0) > 0 and fm.get("errors", 0) == 0, fm
    _report("face_mesh_images", {"cases": seen[0], "face_mesh_counters": fm})


@st.composite
def face_arrays(draw):
    faces = []
    for _ in range(draw(st.integers(0, 4))):
        f = FaceLandmarks()
        f.face_id = draw(st.integers(0, 40))  # unknown ids, zero, repeats
        n = draw(st.sampled_from([1434, 1434, 1434, 0, 3, 1431, 1437]))
        base = np.random.default_rng(draw(st.integers(0, 1000))).random(n).astype(np.float32)
        if n and draw(st.integers(0, 3)) == 0:  # now and then one odd value (NaN, inf, huge)
            base[draw(st.integers(0, n - 1))] = draw(floats)
        f.landmarks = array.array("f", base.tobytes())
        valid_bs = st.lists(st.floats(0, 1, width=32), min_size=52, max_size=52)
        f.blendshapes = np.array(draw(st.one_of(valid_bs, valid_bs, valid_bs, st.lists(floats, min_size=52, max_size=52))),
                                 np.float32)
        f.transformation_matrix = np.array(draw(st.one_of(*[st.just([1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, -30, 0, 0, 0, 1])] * 3,
                                                          st.lists(st.floats(width=64), min_size=16, max_size=16))))
        f.blendshape_names = draw(st.sampled_from([[], [], [], ["x"] * 52]))
        faces.append(f)
    a = FaceLandmarksArray(faces=faces, image_width=draw(st.integers(0, 4000)), image_height=draw(st.integers(0, 4000)))
    a.header = Header()
    a.header.stamp.sec = draw(st.integers(0, 2000))
    a.header.stamp.nanosec = draw(st.integers(0, 999_999_999))
    return a


def test_emotion_handler_never_crashes(emotion_node):
    seen = [0]

    @settings(max_examples=N_FACES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(face_arrays())
    def run(m):
        emotion_node._on_faces(m)  # must not raise
        seen[0] += 1
        assert len(emotion_node.est.windows) <= emotion_node.est.max_faces

    before = dict(emotion_node.diag.counters)
    run()
    em = {k: v - before.get(k, 0) for k, v in emotion_node.diag.counters.items()}
    assert seen[0] >= N_FACES * 0.9
    assert em.get("bad_faces", 0) > 0 and em.get("bad_face_ids", 0) > 0, em
    assert em.get("estimates", 0) >= N_FACES * 0.05, em  # the valid path was exercised too
    _report("emotion_arrays", {"cases": seen[0], "emotion_counters": em})
