"""The camera node as a separate process: video files, a live stream that disconnects, bad sources."""
from __future__ import annotations

import time

import numpy as np
from mjpeg_server import MjpegCamera
from rosnodes import NodeProcess, read_video, stamp_ns
from sensor_msgs.msg import Image

from facephi_ros.nodes.common import IMAGE_TOPIC, SENSOR_QOS


def stamps_ns(msgs):
    return [stamp_ns(m) for m in msgs]


def test_video_file_frames_sizes_and_stamps(probe, faces_dir):
    """A finite video: the camera starts inactive, and is activated only once discovery is done
    on both sides (the probe sees the publisher; the camera reports a matched subscriber), so no
    frame is lost to discovery however busy the machine is."""
    from diagnostic_msgs.msg import DiagnosticArray

    probe.subscribe(Image, IMAGE_TOPIC, SENSOR_QOS)
    probe.subscribe(DiagnosticArray, "/diagnostics")
    t0 = time.time_ns()
    params = {"source": str(faces_dir / "single_face.mp4"), "loop": False, "width": 320, "height": 0, "fps": 30.0,
              "autostart": False}
    with NodeProcess("camera_node", "camera", params) as cam:
        assert probe.change_state("camera", "configure"), cam.log
        assert probe.wait_publishers(IMAGE_TOPIC), "the probe never saw the camera's publisher"
        assert probe.wait_diagnostic("camera", lambda v: int(v.get("subscribers") or 0) >= 1), cam.log
        assert probe.messages(IMAGE_TOPIC) == []  # configured, inactive: nothing published
        assert probe.change_state("camera", "activate"), cam.log
        assert cam.wait_log("end of video", 30), cam.log
        assert cam.alive()  # a finished file is not a crash
    msgs = probe.messages(IMAGE_TOPIC)
    assert len(msgs) >= 60, f"{len(msgs)} of 72 frames"  # best effort on localhost: nearly all
    m = msgs[0]
    assert (m.width, m.height, m.encoding, m.step) == (320, 180, "bgr8", 960)
    assert m.header.frame_id == "camera"
    s = stamps_ns(msgs)
    assert all(b > a for a, b in zip(s, s[1:])) and s[0] >= t0 - 10**9  # real, increasing stamps
    rate = (len(s) - 1) / ((s[-1] - s[0]) / 1e9)
    assert 24 < rate < 36, f"published at {rate:.1f} Hz, asked for 30"
    img = np.frombuffer(m.data, np.uint8).reshape(180, 320, 3)
    # best effort may lose the frames sent before discovery completed: one of the first ones
    refs = [f[:, :, ::-1] for f in read_video(faces_dir / "single_face.mp4", 10, size=(320, 180))]
    diffs = [np.abs(img.astype(int) - r.astype(int)).mean() for r in refs]
    assert min(diffs) < 3, f"first image differs from the video's first frames by {min(diffs):.1f} (BGR order?)"
    assert np.abs(img.astype(int) - refs[int(np.argmin(diffs))][:, :, ::-1].astype(int)).mean() > 3  # not RGB


def test_missing_video_file_is_one_clear_error(ros, tmp_path):
    with NodeProcess("camera_node", "camera_bad", {"source": str(tmp_path / "nope.mp4")}) as cam:
        cam.proc.wait(20)
        log = cam.log
    assert cam.proc.returncode == 2
    assert f"cannot open video file {tmp_path / 'nope.mp4'}: no such file" in log
    assert "Traceback" not in log and len([l for l in log.splitlines() if "error" in l.lower()]) == 1


def test_live_source_reconnects(probe, faces_dir):
    frames = [f[:, :, ::-1] for f in read_video(faces_dir / "single_face.mp4", 10)]
    cam_server = MjpegCamera(frames)
    cam_server.start()
    probe.subscribe(Image, IMAGE_TOPIC, SENSOR_QOS)
    try:
        with NodeProcess("camera_node", "camera_live", {"source": cam_server.url, "reconnect_period": 0.5}) as cam:
            assert probe.wait_for(IMAGE_TOPIC, 10, 30), cam.log
            cam_server.stop()  # the device disappears
            assert cam.wait_log("stopped delivering frames; reconnecting", 20), cam.log
            n_gone = len(probe.messages(IMAGE_TOPIC))
            time.sleep(1.5)
            assert cam.alive()
            cam_server.start()  # and comes back on the same address
            assert cam.wait_log("reconnected", 20), cam.log
            assert probe.wait_for(IMAGE_TOPIC, n_gone + 10, 20), "no frames after reconnecting"
            assert cam.alive()
    finally:
        cam_server.stop()
