"""FacePhi faults: /emotion keeps its rate and latency while the FacePhi node is stalled
(SIGSTOP: a process that takes no CPU at all, the extreme of a slow LLM) or killed, and the
launcher respawns a killed FacePhi node whose /emotion/description then resumes.

  python -m benchmarks.facephi_faults [--window 6]

Runs the default node set with facephi-launch on the bundled clip and writes the figures under
the key "facephi_faults" of docs/results/reliability.json. test/test_reliability.py runs the same
measurement (shorter windows) and asserts on it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))


def _window(probe, topic: str, t0_ns: int, t1_ns: int) -> dict:
    """Messages on `topic` that arrived in [t0, t1): rate per second and stamp-to-arrival latency."""
    with probe.lock:
        got = [(t, m) for t, m in probe.received.get(topic, []) if t0_ns <= t < t1_ns]
    lat = [(t - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6 for t, m in got]
    return {"messages": len(got), "rate_hz": round(len(got) / ((t1_ns - t0_ns) / 1e9), 2),
            "latency_p50_ms": round(float(np.median(lat)), 2) if lat else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 2) if lat else None}


def _observe(probe, topic: str, seconds: float) -> dict:
    t0 = time.time_ns()
    time.sleep(seconds)  # a window of the running pipeline is what is measured
    return _window(probe, topic, t0, time.time_ns())


def measure(probe, launcher_pid: int, window: float = 6.0, resume_timeout: float = 180.0) -> dict:
    """The pipeline started by facephi-launch (pid) with FacePhi; probe subscribed to /emotion and
    /emotion/description, which must already flow. Returns the figures."""
    from rosnodes import children

    from facephi_ros.nodes.common import DESCRIPTION_TOPIC, EMOTION_TOPIC

    out = {"window_s": window}
    (fp,) = children(launcher_pid, "facephi_node")
    out["baseline"] = _observe(probe, EMOTION_TOPIC, window)
    fp.send_signal(signal.SIGSTOP)  # stalled: holds its subscriptions, answers nothing
    try:
        out["facephi_stalled"] = _observe(probe, EMOTION_TOPIC, window)
    finally:
        fp.send_signal(signal.SIGCONT)
    t_kill = time.time_ns()
    fp.kill()
    fp.wait(10)
    out["facephi_killed"] = _observe(probe, EMOTION_TOPIC, window)
    t_end = time.monotonic() + resume_timeout
    resumed = None
    while time.monotonic() < t_end and resumed is None:
        with probe.lock:
            resumed = next((t for t, _ in probe.received.get(DESCRIPTION_TOPIC, []) if t > t_kill), None)
        time.sleep(0.2)
    again = children(launcher_pid, "facephi_node")
    out["respawned"] = bool(again) and again[0].pid != fp.pid
    out["description_resumed_after_s"] = round((resumed - t_kill) / 1e9, 1) if resumed else None
    for k in ("facephi_stalled", "facephi_killed"):
        out[f"{k}_rate_ratio"] = round(out[k]["rate_hz"] / max(out["baseline"]["rate_hz"], 1e-9), 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=6.0, help="seconds observed before, during the stall, after the kill")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/reliability.json")
    a = ap.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from facephi_ros.msg import EmotionEstimate
    from rosnodes import Probe

    from facephi_ros.evaluation.metrics import command_line
    from facephi_ros.nodes.common import DESCRIPTION_TOPIC, EMOTION_TOPIC

    rclpy.init()
    probe = Probe("faults")
    probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
    probe.subscribe(EmotionEstimate, DESCRIPTION_TOPIC)
    launcher = subprocess.Popen([sys.executable, "-m", "facephi_ros.launcher"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not (probe.wait_for(EMOTION_TOPIC, 30, 120) and probe.wait_for(DESCRIPTION_TOPIC, 1, 180)):
            print("the pipeline did not start", file=sys.stderr)
            return 1
        res = measure(probe, launcher.pid, a.window)
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(60)
        probe.close()
        rclpy.try_shutdown()
    res["command"] = command_line("python -m benchmarks.facephi_faults", argv)
    print(json.dumps(res, indent=1))
    old = json.loads(a.out.read_text()) if a.out.exists() else {}
    old["facephi_faults"] = res
    a.out.write_text(json.dumps(old, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
