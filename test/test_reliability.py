"""Faults: a node killed and restarted while the others keep running; FacePhi stalled or killed
while /emotion keeps its rate and latency; a broken emotion model stops the whole launch cleanly."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import yaml
from facephi_ros.msg import EmotionEstimate
from rosnodes import stamp_ns

from facephi_ros.nodes.common import DESCRIPTION_TOPIC, EMOTION_TOPIC

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def _child(pid: int, exe: str):
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if any(exe in part for part in c.cmdline()):
                return c
        except psutil.Error:
            pass
    return None


def test_killed_node_is_restarted_while_the_others_keep_running(probe, tmp_path):
    probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
    launcher = subprocess.Popen([sys.executable, "-m", "facephi_ros.launcher", "run_monitor:=false"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert probe.wait_for(EMOTION_TOPIC, 30, 60), "no /emotion from the pipeline"
        fm = _child(launcher.pid, "face_mesh_node")
        cam, emo = _child(launcher.pid, "camera_node"), _child(launcher.pid, "emotion_node")
        assert fm and cam and emo
        fm.kill()  # the face-mesh node dies
        fm.wait(10)
        t_dead = time.time_ns()
        # the launcher restarts it after 2 s, and a new face mesh needs seconds more to start: until
        # then no landmarks, so at most the estimates already in flight at the kill may arrive
        assert probe.wait_quiet(EMOTION_TOPIC, 0.5, 10), "estimates kept coming without landmarks"
        n_dead = len(probe.messages(EMOTION_TOPIC))
        late = [e for e in probe.messages(EMOTION_TOPIC) if stamp_ns(e) > t_dead]
        assert not late, f"{len(late)} estimates of frames after the kill"
        # the launcher restarts it; the camera and emotion processes are the same ones throughout
        assert probe.wait_for(EMOTION_TOPIC, n_dead + 40, 60), "the pipeline did not resume"
        again = _child(launcher.pid, "face_mesh_node")
        assert again and again.pid != fm.pid
        assert cam.is_running() and emo.is_running() and launcher.poll() is None
        after = probe.messages(EMOTION_TOPIC)[n_dead:]
        frames = [e.window_frames for e in after]
        k = frames.index(1)  # at most the 2 in-flight estimates of the old window come first
        assert k <= 2 and frames[k:k + 5] == [1, 2, 3, 4, 5] and max(frames) == 16, frames[:20]  # it refills
    finally:
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=30)
    assert "face_mesh died (status -9); restarting it" in err, err


def test_broken_emotion_model_stops_the_launch(ros, tmp_path):
    params = yaml.safe_load((REPO / "config" / "facephi.yaml").read_text())
    params["emotion"]["ros__parameters"]["model_dir"] = str(tmp_path / "no_model")
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "-m", "facephi_ros.launcher", f"params_file:={f}"], capture_output=True,
                       text=True, timeout=90)
    assert r.returncode == 2
    assert "emotion exited with status 2" in r.stderr and f"{tmp_path / 'no_model' / 'model.json'} not found" in r.stderr
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and any(
        str(f) in part for part in p.info["cmdline"])]
    assert not left, "processes left half-running"


def test_facephi_stalled_or_killed_does_not_touch_emotion(probe):
    """FacePhi frozen (SIGSTOP) and then killed: /emotion keeps its rate and latency, the
    launcher respawns FacePhi and /emotion/description resumes. The same measurement as
    `python -m benchmarks.facephi_faults` (docs/results/reliability.json), with shorter windows."""
    from benchmarks.facephi_faults import measure

    probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
    probe.subscribe(EmotionEstimate, DESCRIPTION_TOPIC)
    launcher = subprocess.Popen([sys.executable, "-m", "facephi_ros.launcher"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert probe.wait_for(EMOTION_TOPIC, 30, 120), "no /emotion from the pipeline"
        assert probe.wait_for(DESCRIPTION_TOPIC, 1, 180), "FacePhi never answered"
        r = measure(probe, launcher.pid, window=4.0)
    finally:
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=60)
    base = r["baseline"]
    assert base["rate_hz"] > 10, r
    for k in ("facephi_stalled", "facephi_killed"):
        assert r[k]["rate_hz"] >= 0.8 * base["rate_hz"], (k, r)
        assert r[k]["latency_p50_ms"] <= 1.5 * base["latency_p50_ms"] + 20, (k, r)
    assert r["respawned"] and "facephi died (status -9); restarting it" in err, err
    assert r["description_resumed_after_s"] is not None, r
