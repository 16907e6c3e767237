"""Privacy: with the whole pipeline running, the only topics carrying image data are the
camera's and, only when switched on, the face-mesh debug image. In appearance mode the image
topics are the same, and the only new data in each face's message is the appearance vector:
256 + 7 numbers, far fewer than the 2,304 pixels of the crop they come from."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

IMAGE_TYPES = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}


def image_topics(probe, wait_for: set, timeout=40.0):
    t_end = time.monotonic() + timeout
    topics = {}
    while time.monotonic() < t_end:
        topics = dict(probe.node.get_topic_names_and_types())
        if wait_for <= set(topics):
            break
        time.sleep(0.3)
    return {t for t, types in topics.items() if IMAGE_TYPES & set(types)}, topics


@pytest.mark.parametrize("debug,appearance", [(False, False), (True, False), (False, True)])
def test_no_pixels_leave_the_face_mesh_node(probe, debug, appearance):
    from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray

    probe.subscribe(FaceLandmarksArray, "/facephi/faces")
    probe.subscribe(EmotionEstimate, "/emotion")
    proc = subprocess.Popen([sys.executable, "-m", "facephi_ros.launcher", "run_monitor:=false",
                             f"debug_image:={'true' if debug else 'false'}",
                             f"appearance:={'true' if appearance else 'false'}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # every node has created its publishers once FacePhi (the slowest to configure) has
        expected_all = {"/facephi/faces", "/emotion", "/camera/image_raw", "/emotion/description"} | (
            {"/facephi/debug_image"} if debug else set())
        images, topics = image_topics(probe, expected_all, timeout=120)
        assert {"/facephi/faces", "/emotion", "/camera/image_raw"} <= set(topics), topics
        expected = {"/camera/image_raw"} | ({"/facephi/debug_image"} if debug else set())
        assert images == expected, f"image topics {images}, all topics {topics}"
        # and no facephi message type carries image data
        for t in ("/facephi/faces", "/emotion"):
            assert not IMAGE_TYPES & set(topics[t])
        # what a face's message carries: the vector in appearance mode, nothing new otherwise
        assert probe.wait_until("/facephi/faces", lambda ms: any(m.faces for m in ms), 60), "no face on /facephi/faces"
        face = next(f for m in probe.messages("/facephi/faces") for f in m.faces)
        sizes = (len(face.appearance_embedding), len(face.appearance_logits), len(face.appearance_classes))
        assert sizes == ((256, 7, 7) if appearance else (0, 0, 0)), sizes
        assert probe.wait_until("/emotion", lambda ms: len(ms) >= 5, 60), "no estimate on /emotion"
        models = {e.model for e in probe.messages("/emotion")[4:]}
        assert models == {"lstm:lstm_hybrid_fer7" if appearance else "lstm:lstm_fer7"}, models
    finally:
        proc.send_signal(2)
        proc.wait(30)
