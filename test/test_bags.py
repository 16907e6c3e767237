"""Bags: making, reading (MCAP and sqlite3), clear errors, recording, and the evaluation on a
short labelled bag through the real nodes."""
from __future__ import annotations

import glob
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from rosnodes import LineReader

from facephi_ros.bags.io import GT_TOPIC, BagError, BagReader
from facephi_ros.bags.make import StreamSpec, bag_from_images, bag_from_video
from facephi_ros.evaluation.bag_metrics import per_frame, score


def test_per_frame_takes_the_most_confident_face_and_both_readings():
    names = ["a", "b", "c"]
    rows = [(1, "a", 0.5, names, [0.2, 0.5, 0.3], 10),   # published a (calm rule), model's top b
            (1, "c", 0.9, names, [0.05, 0.05, 0.9], 11),  # a second face, more confident: it counts
            (2, "b", 0.6, names, [0.1, 0.6, 0.3], 12),
            (3, "x", 0.7, ["a", "x"], [0.3, 0.7], 13),   # a class the evaluation does not know: wrong
            (4, "a", 0.4, names, [float("nan"), 0.1, 0.2], 14)]  # NaN probabilities: no top class
    published, top = per_frame(rows, ["a", "b", "c"])
    assert published == {1: (2, 0.9, 11), 2: (1, 0.6, 12), 3: (-1, 0.7, 13), 4: (0, 0.4, 14)}
    assert {k: v[0] for k, v in top.items()} == {1: 2, 2: 1, 3: -1, 4: -1}
    _, top = per_frame(rows[:1], ["a", "b", "c"])
    assert top[1] == (1, 0.5, 10)


def test_score_on_a_known_case():
    ms = 10**6
    n = 12
    images = {k * 100 * ms: k * 100 * ms + 1 * ms for k in range(n)}  # published 1 ms after the stamp
    truth = {k * 100 * ms: (0 if k < 5 else 1, 1 if k < 5 else 2) for k in range(n)}
    faces = {k * 100 * ms: 1 for k in range(n) if k != 11}  # the last frame never came back
    pred = [0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]  # truth changes at frame 5; the model follows from frame 7
    estimates = {k * 100 * ms: (p, 0.9, k * 100 * ms + 21 * ms) for k, p in enumerate(pred)}
    r = score(images, truth, faces, estimates, ["a", "b"])
    assert r["processed_ratio"] == round(11 / 12, 4) and r["estimate_ratio"] == 1.0
    assert r["accuracy"] == round(8 / 12, 4)  # wrong: frames 3, 5, 6 and 11 (no estimate)
    assert r["latency_p50_ms"] == 20.0
    assert r["segment_accuracy"] == 1.0  # majority of each segment's second half: a, then b
    assert r["changes"] == 1 and r["reaction_s"] == pytest.approx(0.2)
    # label changes 0->1 (frame 3), 1->0 (4), 0->1 (7) over 1.0 s of estimates
    assert r["flips_per_min"] == pytest.approx(180.0)


def test_segment_labels_vote_over_each_segments_second_half():
    """Per segment: the truth's majority, and the majority of the predictions in its second half
    (the first half is the model's time to react; frames without a prediction do not vote, and a
    segment with none in its second half is -1)."""
    from facephi_ros.evaluation.bag_metrics import segment_labels

    pred = [1, 1, 1, 0, 0, 2, 2, 2, -1, -1, 0, 1, 1, 1]
    gt = [0] * 5 + [2] * 5 + [1] * 4
    seg = [7] * 5 + [3] * 5 + [9] * 4
    # segment 7: second half (frames 2-4) votes 1, 0, 0 -> 0; segment 3: frames 7-9 vote 2 (two without a
    # prediction); segment 9: frames 12-13 vote 1
    assert segment_labels(pred, gt, seg) == ([0, 2, 1], [0, 2, 1])
    assert segment_labels([0, 0, -1, -1], [1, 1, 1, 1], [5] * 4) == ([1], [-1])


@pytest.fixture(scope="module")
def posed_folder(tmp_path_factory, faces_dir):
    root = tmp_path_factory.mktemp("posed")
    for label, name in (("happy", "0-f15-hao-ph.jpg"), ("surprise", "0-f1-su-ph.jpg")):
        (root / "test" / label).mkdir(parents=True)
        shutil.copy(faces_dir / name, root / "test" / label / name)
    return root


def test_labelled_bag_holds_and_changes(posed_folder, tmp_path):
    info = bag_from_images(posed_folder, "test", tmp_path / "b", StreamSpec(hold_s=0.5, transition_s=0.1, rate=20))
    assert info["frames"] == 20 and info["segments"] == 2
    with BagReader(tmp_path / "b") as r:
        assert set(r.topics) == {"/camera/image_raw", GT_TOPIC}
        gts = [m for *_, m in r.messages([GT_TOPIC])]
        imgs = [m for *_, m in r.messages(["/camera/image_raw"])]
    assert len(gts) == len(imgs) == 20
    assert [g.header.stamp for g in gts] == [i.header.stamp for i in imgs]
    labels = [g.label for g in gts]
    assert labels[:10] == [labels[0]] * 10 and set(labels) == {"happy", "surprise"}
    assert labels[10] == labels[0] and labels[11] == labels[-1]  # fade of 2 frames: switches half-way
    frames = [np.asarray(i.data).reshape(i.height, i.width, 3) for i in imgs[:3]]
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 0.5  # jittered, like a camera


def test_labelled_bag_draws_only_the_images_asked_for(faces_dir, tmp_path):
    root = tmp_path / "posed"
    for label, names in (("happy", ["0-f15-hao-ph.jpg"]), ("surprise", ["0-f1-su-ph.jpg", "15-f13-anc-ph.jpg"])):
        (root / "test" / label).mkdir(parents=True)
        for name in names:
            shutil.copy(faces_dir / name, root / "test" / label / name)
    spec = StreamSpec(hold_s=0.5, transition_s=0.1, rate=20, only=("surprise/0-f1-su-ph.jpg",))
    info = bag_from_images(root, "test", tmp_path / "b", spec)
    with BagReader(tmp_path / "b") as r:
        gts = [m for *_, m in r.messages([GT_TOPIC])]
    assert info["segments"] == 1 and {g.description for g in gts} == {"test/surprise/0-f1-su-ph.jpg"}
    with pytest.raises(ValueError, match="1 of the 2 images"):
        bag_from_images(root, "test", tmp_path / "c", StreamSpec(only=("surprise/0-f1-su-ph.jpg", "sad/missing.jpg")))


def test_video_bag_sqlite_and_mcap(faces_dir, tmp_path):
    for storage in ("mcap", "sqlite3"):
        info = bag_from_video(faces_dir / "single_face.mp4", tmp_path / storage, storage, width=320, max_frames=10)
        with BagReader(tmp_path / storage) as r:
            msgs = [m for *_, m in r.messages(["/camera/image_raw"])]
        assert info["frames"] == len(msgs) == 10 and msgs[0].width == 320 and msgs[0].encoding == "bgr8"


def test_missing_topic_is_one_clear_error(faces_dir, tmp_path):
    bag_from_video(faces_dir / "single_face.mp4", tmp_path / "v", max_frames=2)
    with BagReader(tmp_path / "v") as r, pytest.raises(BagError) as e:
        r.require([GT_TOPIC])
    assert str(e.value) == (f"bag {tmp_path / 'v'} has no topic /ground_truth/emotion "
                            "(it has: /camera/image_raw (sensor_msgs/msg/Image))")
    r = subprocess.run([sys.executable, "-m", "facephi_ros.bags.cli", "play", str(tmp_path / "v"), "--topics", "/nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "has no topic /nope" in r.stderr


def test_truncated_bag_is_one_clear_error(faces_dir, tmp_path):
    bag_from_video(faces_dir / "single_face.mp4", tmp_path / "v", max_frames=30)
    f = next((tmp_path / "v").glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match="truncated or corrupt") as e:
        with BagReader(tmp_path / "v") as r:
            list(r.messages(["/camera/image_raw"]))
    assert "\n" not in str(e.value)


def test_unknown_message_type_is_one_clear_error(tmp_path):
    ts = get_typestore(Stores.ROS2_KILTED)
    ts.register(get_types_from_msg("int32 a", "robot_msgs/msg/Thing"))
    w = Writer(tmp_path / "u", version=9, storage_plugin=StoragePlugin.SQLITE3)
    w.open()
    c = w.add_connection("/thing", "robot_msgs/msg/Thing", typestore=ts)
    w.write(c, 1, ts.serialize_cdr(ts.types["robot_msgs/msg/Thing"](a=1), "robot_msgs/msg/Thing"))
    w.close()
    with BagReader(tmp_path / "u") as r:  # the bag's own definition is enough: a robot's bag reads
        assert [m.a for *_, m in r.messages(["/thing"])] == [1]
    con = sqlite3.connect(glob.glob(str(tmp_path / "u" / "*.db3"))[0])
    con.execute("delete from message_definitions")  # as in bags from rosbag2 writers that stored none
    con.commit()
    con.close()
    with BagReader(tmp_path / "u") as r, pytest.raises(BagError) as e:
        r.require(["/thing"])
    assert "topic /thing has unknown message type robot_msgs/msg/Thing" in str(e.value)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_recorder_leaves_a_complete_bag(probe, tmp_path, sig):
    from facephi_ros.msg import EmotionEstimate
    from std_msgs.msg import Header

    from facephi_ros.nodes.common import reliable_qos
    from facephi_ros.nodes.convert import make_estimate

    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "facephi_ros.bags.cli", "record", str(out), "--topics", "/emotion_rec_test",
                             "--progress", "0.2"], stdout=subprocess.PIPE, text=True)
    out_lines = LineReader(proc)
    assert out_lines.wait("recording", 60), out_lines.text
    sent = 200
    # reliable, and a history that holds every message: none is lost once the recorder is matched
    pub = probe.node.create_publisher(EmotionEstimate, "/emotion_rec_test", reliable_qos(sent + 10))
    assert probe.wait_subscribers(pub, timeout=30)
    for k in range(sent):
        pub.publish(make_estimate(Header(stamp=probe.now()), 1, "x", ["a", "b"], [0.3, 0.7], window_frames=k))
        time.sleep(0.005)
    assert out_lines.wait(f'{{"progress": {{"/emotion_rec_test": {sent}}}}}', 60), out_lines.text[-500:]
    proc.send_signal(sig)  # stopped while recording
    line = out_lines.finish(30)
    assert proc.returncode == 0
    with BagReader(out) as r:
        got = [m.window_frames for *_, m in r.messages(["/emotion_rec_test"])]
    assert got == list(range(sent)), f"{len(got)} of {sent} recorded"
    assert f'"recorded": {{"/emotion_rec_test": {sent}}}' in line


def test_evaluation_of_a_short_labelled_bag(posed_folder, tmp_path, ros):
    from facephi_ros.bags.evaluate import evaluate_bag

    bag_from_images(posed_folder, "test", tmp_path / "b", StreamSpec(hold_s=2.0, transition_s=0.1, rate=15))
    res = evaluate_bag(tmp_path / "b", tmp_path / "eval")
    assert res["frames_published"] == 60
    assert res["processed_ratio"] >= 0.9 and res["estimate_ratio"] >= 0.9
    assert res["segment_accuracy"] == 1.0 and res["segments"] == 2  # clear posed faces: known answer
    assert res["accuracy"] >= 0.75
    assert res["reaction_s"] is not None and res["reaction_s"] <= 1.0
    assert 0 < res["latency_p50_ms"] < 500 and res["model"].startswith("lstm:")
    for f in ("bag_eval.json", "confusion.png", "timeline.png"):
        assert (tmp_path / "eval" / f).stat().st_size > 0
    with BagReader(tmp_path / "eval" / "recorded") as r:  # what came back was recorded, readably
        assert sum(1 for _ in r.messages(["/emotion"], deserialize=False)) == res["recorded"]["/emotion"] > 0
    # the replay waits for every node, FacePhi's LLM included, so FacePhi answers during it;
    # its shutdown at the end is quiet (no error about a publisher whose context has gone)
    assert res["recorded"]["/emotion/description"] >= 1
    log = (tmp_path / "eval" / "pipeline.log").read_text()
    assert "[ERROR]" not in log, log[-2000:]


def test_small_faces_bag_shows_each_face_small_in_a_room(faces_dir, tmp_path):
    """canvas mode: FER2013 test images at 48-64 px inside 640x480 frames of a real room, which
    the multi-face finder must find and the ground truth still labels."""
    from conftest import need

    from facephi_ros.landmarks.multiface import MultiFaceLandmarker

    fer = need(faces_dir.parent / "fer2013" / "test")
    root = tmp_path / "fer"
    for label in ("happy", "surprise"):
        (root / "test" / label).mkdir(parents=True)
        for p in sorted((fer / label).glob("*.jpg"))[:2]:
            shutil.copy(p, root / "test" / label / p.name)
    spec = StreamSpec(hold_s=0.5, transition_s=0.1, rate=20, per_class=1, canvas=(640, 480), face_px=(48, 64),
                      background=str(faces_dir / "no_face.mp4"))
    info = bag_from_images(root, "test", tmp_path / "b", spec)
    assert info["segments"] == 2
    with BagReader(tmp_path / "b") as r:
        imgs = [m for *_, m in r.messages(["/camera/image_raw"])]
        gts = [m for *_, m in r.messages([GT_TOPIC])]
    assert {(i.width, i.height) for i in imgs} == {(640, 480)} and len(gts) == len(imgs)
    first = np.asarray(imgs[5].data).reshape(480, 640, 3)[:, :, ::-1]  # bgr8 -> rgb
    with MultiFaceLandmarker() as mf:
        found = mf.detect(np.ascontiguousarray(first))
    assert len(found) == 1, f"{len(found)} faces found"
    assert 30 <= found[0].bbox[2] <= 90, found[0].bbox  # a small face (the mesh box of a 48-64 px image)


def test_median_ms_warms_up_then_times_each_call_with_its_index():
    """The timing helper of the cost figures: warm-up calls first, then one timed call per index
    (so a caller can time a different real input per call), the median in milliseconds."""
    from facephi_ros.evaluation.metrics import median_ms

    calls = []
    ms = median_ms(lambda k: calls.append(k) or sum(range(20000)), repeats=7, warmup=3)
    assert calls == [0, 1, 2] + list(range(7))
    assert 0 < ms < 1000
