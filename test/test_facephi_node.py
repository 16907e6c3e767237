"""The FacePhi language node as a separate process with the shipped default model: real
landmarks in, /emotion/description out, asynchronous (rate limit, newest face wins), the
only-on-change option, bad input, and a missing model."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray
from rosnodes import NodeProcess, stamp_ns
from std_msgs.msg import Header

from facephi_ros.facephi import prompts
from facephi_ros.nodes.common import DESCRIPTION_TOPIC, EMOTION_TOPIC, FACES_TOPIC
from facephi_ros.nodes.convert import face_to_msg, make_array, make_estimate


@pytest.fixture(scope="module")
def happy(posed):
    return posed["happy"]



def publish_stream(probe, pub, face, seconds: float, face_id: int = 1, rate: float = 30.0) -> list[int]:
    f, w, h = face
    stamps = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        header = Header(stamp=probe.now(), frame_id="camera")
        pub.publish(make_array(header, w, h, [face_to_msg(f, face_id, 1.0, header, w, h)], 0.01, 0))
        stamps.append(stamp_ns(header))
        time.sleep(1 / rate)
    return stamps


def test_answers_asynchronously_with_rate_limit(ros, probe, happy):
    with NodeProcess("facephi_node", "facephi", {"rate_hz": 2.0, "threads": 2, "mode": "answer"}) as node:
        assert node.wait_log("ready", 90), node.log
        probe.subscribe(EmotionEstimate, DESCRIPTION_TOPIC)
        probe.subscribe(DiagnosticArray, "/diagnostics")
        pub = probe.publisher(FaceLandmarksArray, FACES_TOPIC)
        assert probe.wait_subscribers(pub)  # reliable: matched is enough
        t0 = time.monotonic()
        stamps = publish_stream(probe, pub, happy, 4.0)
        # the newest frame wins: once the stream stops, the frame still waiting is the last one,
        # so an answer about exactly that frame must come
        assert probe.wait_until(DESCRIPTION_TOPIC, lambda ms: any(stamp_ns(m) == stamps[-1] for m in ms), 30), node.log
        elapsed = time.monotonic() - t0
        out = probe.messages(DESCRIPTION_TOPIC)
        assert 2 <= len(out) <= 2.0 * elapsed + 1, (len(out), elapsed)  # rate limit, not one per frame
        got = [stamp_ns(m) for m in out]
        assert all(s in stamps for s in got) and got == sorted(got)  # stamps of source frames, in order
        m = out[-1]
        assert m.face_id == 1 and m.model.startswith("facephi:")
        assert len(m.class_names) == len(m.probabilities) == 7 and abs(sum(m.probabilities) - 1) < 1e-4
        assert m.label == m.class_names[int(np.argmax(m.probabilities))] and m.confidence == max(m.probabilities)
        assert m.label == "happy", list(zip(m.class_names, m.probabilities))  # a posed smile
        assert m.description and prompts.keyword_class(m.description, list(m.class_names)) is not None, m.description
        assert math.isfinite(m.valence) and m.valence > 0
        # answers pool the face's last frames: at 30 Hz all of pool_frames (6) fit in pool_seconds (0.5 s)
        mine = [s for d in probe.messages("/diagnostics") for s in d.status if s.name.endswith("facephi")]
        pooled = [int(kv.value) for st in mine for kv in st.values if kv.key == "pooled_frames"]
        assert pooled and max(pooled) == 6, pooled


def test_only_on_change_and_bad_input(ros, probe, happy):
    params = {"rate_hz": 10.0, "threads": 2, "mode": "label", "only_on_change": True}
    with NodeProcess("facephi_node", "facephi", params) as node:
        assert node.wait_log("ready", 90), node.log
        probe.subscribe(EmotionEstimate, DESCRIPTION_TOPIC)
        probe.subscribe(DiagnosticArray, "/diagnostics")
        pub = probe.publisher(FaceLandmarksArray, FACES_TOPIC)
        lstm = probe.publisher(EmotionEstimate, EMOTION_TOPIC)
        assert probe.wait_subscribers(pub) and probe.wait_subscribers(lstm)  # reliable: matched is enough
        classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]

        def lstm_says(label):
            p = np.eye(7)[classes.index(label)]
            lstm.publish(make_estimate(Header(stamp=probe.now()), 1, "lstm:test", classes, p, 0.5, 0.5))

        lstm_says("happy")
        n = len(publish_stream(probe, pub, happy, 2.0))
        # every frame reached the node (its /diagnostics count), and then nothing more was said
        assert probe.wait_diagnostic("facephi", lambda v: int(v.get("frames", 0)) >= n, 20), node.log
        assert probe.wait_quiet(DESCRIPTION_TOPIC, 1.0)
        assert len(probe.messages(DESCRIPTION_TOPIC)) == 1, node.log  # the LSTM's label did not change
        lstm_says("sad")
        n += len(publish_stream(probe, pub, happy, 1.0))
        assert probe.wait_for(DESCRIPTION_TOPIC, 2, 10)
        assert probe.wait_diagnostic("facephi", lambda v: int(v.get("frames", 0)) >= n, 20), node.log
        assert probe.wait_quiet(DESCRIPTION_TOPIC, 1.0)
        assert len(probe.messages(DESCRIPTION_TOPIC)) == 2
        assert probe.messages(DESCRIPTION_TOPIC)[-1].description == ""  # label mode
        # NaN landmarks: one line, no answer, the node stays up
        f, w, h = happy
        bad = face_to_msg(f, 7, 1.0, Header(stamp=probe.now()), w, h)
        bad.landmarks[5] = float("nan")
        pub.publish(make_array(Header(stamp=probe.now()), w, h, [bad], 0.01, 0))
        assert node.wait_log("face skipped", 10), node.log
        assert node.alive()


def test_missing_model_is_one_line_and_exit_2(ros, tmp_path):
    with NodeProcess("facephi_node", "facephi", {"model_dir": str(tmp_path / "nothing")}) as node:
        node.proc.wait(60)
        assert node.proc.returncode == 2, node.log
        errors = [ln for ln in node.log.splitlines() if "error" in ln.lower()]
        assert len(errors) == 1 and "nothing" in errors[0], node.log
