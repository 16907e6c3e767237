"""Managed (lifecycle) nodes driven through the standard lifecycle services with real rclpy:
nothing is published while inactive, deactivate releases the camera and activate opens it
again, a bad parameter or a missing model fails configure with one clear line (the node stays
up, unconfigured, for a manager to retry), cleanup and shutdown free what configure took."""
from __future__ import annotations

import time

import psutil
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray
from rosnodes import NodeProcess, stamp_ns
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from facephi_ros.nodes.common import EMOTION_TOPIC, FACES_TOPIC, IMAGE_TOPIC, SENSOR_QOS
from facephi_ros.nodes.convert import face_to_msg, make_array


def _holds(proc, path) -> bool:
    """Whether the process has `path` open (the camera's video file / device)."""
    return any(f.path == str(path) for f in psutil.Process(proc.pid).open_files())


def _quiet_for(probe, topic: str, seconds: float) -> bool:
    """True when nothing arrives on `topic` for `seconds` (an absence can only be seen over time)."""
    n = len(probe.messages(topic))
    time.sleep(seconds)
    return len(probe.messages(topic)) == n


def test_camera_transitions_release_and_reopen_the_source(probe, faces_dir):
    video = faces_dir / "single_face.mp4"
    probe.subscribe(Image, IMAGE_TOPIC, SENSOR_QOS)
    probe.subscribe(DiagnosticArray, "/diagnostics")
    params = {"source": str(video), "loop": True, "width": 320, "fps": 30.0, "autostart": False}
    with NodeProcess("camera_node", "camera", params) as cam:
        assert probe.get_state("camera") == "unconfigured"
        assert not probe.change_state("camera", "activate")  # not a valid transition from unconfigured
        assert probe.change_state("camera", "configure"), cam.log
        assert probe.get_state("camera") == "inactive"
        assert probe.wait_diagnostic("camera", lambda v: v.get("lifecycle_state") == "inactive" and int(v["subscribers"]) >= 1)
        assert not _holds(cam.proc, video)  # configured: the source was checked, not kept open
        assert _quiet_for(probe, IMAGE_TOPIC, 1.0) and probe.messages(IMAGE_TOPIC) == []
        assert probe.change_state("camera", "activate"), cam.log
        assert probe.wait_for(IMAGE_TOPIC, 10, 20), cam.log
        assert _holds(cam.proc, video)
        assert probe.change_state("camera", "deactivate"), cam.log
        assert probe.get_state("camera") == "inactive"
        assert cam.wait_log(f"released {video}", 10) and not _holds(cam.proc, video)  # the device is free
        n = len(probe.messages(IMAGE_TOPIC))
        assert _quiet_for(probe, IMAGE_TOPIC, 1.0), "images while inactive"
        assert probe.change_state("camera", "activate"), cam.log  # opened again
        assert probe.wait_for(IMAGE_TOPIC, n + 10, 20) and _holds(cam.proc, video)
        assert probe.change_state("camera", "deactivate") and probe.change_state("camera", "cleanup")
        assert probe.get_state("camera") == "unconfigured"
        assert probe.change_state("camera", "shutdown")
        assert probe.get_state("camera") == "finalized"
        assert cam.alive() and "Traceback" not in cam.log


def test_face_mesh_and_emotion_work_only_while_active(probe, faces_dir, posed):
    import cv2
    from rosnodes import image_msg

    probe.subscribe(FaceLandmarksArray, FACES_TOPIC)
    probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
    images = probe.publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
    faces = probe.publisher(FaceLandmarksArray, "/lifecycle_test/faces")
    rgb = cv2.cvtColor(cv2.imread(str(faces_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    happy, w, h = posed["happy"]

    def face_array():
        header = Header(stamp=probe.now(), frame_id="camera")
        return make_array(header, w, h, [face_to_msg(happy, 1, 1.0, header, w, h)], 0.01, 0)

    with NodeProcess("face_mesh_node", "face_mesh", {"autostart": False}) as fm, \
            NodeProcess("emotion_node", "emotion", {"autostart": False}, ["-r", f"{FACES_TOPIC}:=/lifecycle_test/faces"]) as emo:
        for name, node in (("face_mesh", fm), ("emotion", emo)):
            assert probe.change_state(name, "configure"), node.log
        assert fm.wait_log("face mesh ready", 5) and emo.wait_log("emotion model", 5)
        # inactive: images and landmarks go unanswered
        for _ in range(10):
            images.publish(image_msg(rgb, probe.now()))
            faces.publish(face_array())
            time.sleep(0.1)
        assert _quiet_for(probe, FACES_TOPIC, 0.5) and probe.messages(FACES_TOPIC) == []
        assert probe.messages(EMOTION_TOPIC) == []
        for name, node in (("face_mesh", fm), ("emotion", emo)):
            assert probe.change_state(name, "activate"), node.log
        assert probe.handshake(images, lambda: image_msg(rgb, probe.now()), FACES_TOPIC, lambda m: len(m.faces) == 1, 30), fm.log
        assert probe.handshake(faces, face_array, EMOTION_TOPIC, lambda e: e.face_id == 1, 30), emo.log
        for name in ("face_mesh", "emotion"):
            assert probe.change_state(name, "deactivate")
        t_off = stamp_ns(probe.now())  # every frame from now on is stamped after the deactivation
        for _ in range(10):
            images.publish(image_msg(rgb, probe.now()))
            faces.publish(face_array())
            time.sleep(0.1)
        assert _quiet_for(probe, FACES_TOPIC, 0.5)
        assert not [m for m in probe.messages(FACES_TOPIC) if stamp_ns(m) >= t_off], "landmarks while inactive"
        assert not [m for m in probe.messages(EMOTION_TOPIC) if stamp_ns(m) >= t_off], "estimates while inactive"
        for name in ("face_mesh", "emotion"):
            assert probe.change_state(name, "cleanup") and probe.get_state(name) == "unconfigured"
        assert fm.alive() and emo.alive() and "Traceback" not in fm.log + emo.log


@pytest.mark.parametrize("node,params,expected", [
    ("emotion_node", {"model_dir": "/nonexistent/model"}, "/nonexistent/model/model.json not found"),
    ("face_mesh_node", {"num_faces": 0}, "num_faces and min_hits must be >= 1"),
    ("face_mesh_node", {"min_face_px": 4}, "min_face_px >= 8"),
    ("face_mesh_node", {"landmark_views": ["plain", "sideways"]}, "landmark_views must name one or more of"),
    ("camera_node", {"source": "/nonexistent/clip.mp4"}, "cannot open video file /nonexistent/clip.mp4: no such file"),
])
def test_failed_configure_is_one_line_and_the_node_stays_up(probe, node, params, expected):
    name = node.removesuffix("_node")
    with NodeProcess(node, name, params | {"autostart": False}) as proc:
        assert not probe.change_state(name, "configure")
        assert probe.get_state(name) == "unconfigured"
        errors = [ln for ln in proc.log.splitlines() if "error" in ln.lower()]
        assert len(errors) == 1 and expected in errors[0], proc.log
        assert proc.alive() and "Traceback" not in proc.log
        assert not probe.change_state(name, "configure")  # a manager may retry: the same one line again
        assert probe.get_state(name) == "unconfigured" and proc.alive()
