"""Benchmark: the face-mesh node fed 640x480 frames at 30 Hz, against the bare landmarker and
the image transport, all measured in the same run (this machine is noisy: ratios matter).

    python -m benchmarks.landmark_bench [--seconds 20] [--out docs/results/landmark_bench.json]

1. bare: Landmarker.detect (VIDEO mode) on the same frames in this process;
2. transport: the frames published at 30 Hz to a subscriber in another process (stamp -> arrival);
3. node: the frames published at 30 Hz to the face-mesh node process; stamp -> FaceLandmarksArray
   arrival here, and the share of frames that came back; once with the default multi-face finder
   and once with the landmarker's own whole-frame detector (the default before issue 16).
Targets (issue 2): processed_ratio >= 0.95 and latency_p50 <= 1.3 * bare_p50 + transport_p50;
(issue 16): latency_ratio_to_whole_frame_detector <= 1.3.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))


def frames_640x480(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(cv2.cvtColor(cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    return out


def pct(a, q):
    return round(float(np.percentile(a, q)), 2) if len(a) else float("nan")


def publish_at(pub, probe, frames, rate, image_msg):
    period = 1.0 / rate
    t_next = time.monotonic()
    stamps = []
    for f in frames:
        stamp = probe.now()
        stamps.append(stamp.sec * 10**9 + stamp.nanosec)
        pub.publish(image_msg(f, stamp, encoding="bgr8"))
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    return stamps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--video", type=Path, default=None, help="default: the bundled clip")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/landmark_bench.json")
    a = ap.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from facephi_ros.msg import FaceLandmarksArray
    from rosnodes import NodeProcess, Probe, image_msg
    from sensor_msgs.msg import Image

    from facephi_ros.assets import asset_path
    from facephi_ros.evaluation.metrics import command_line, write_result
    from facephi_ros.landmarks.landmarker import Landmarker
    from facephi_ros.nodes.common import FACES_TOPIC, IMAGE_TOPIC, SENSOR_QOS

    n = int(a.seconds * a.rate)
    frames = frames_640x480(a.video or asset_path("default_video"), n)

    # 1. bare landmarker
    bare = []
    with Landmarker(num_faces=4) as lm:
        for k, f in enumerate(frames):
            t0 = time.perf_counter()
            lm.detect(f, int(k * 1000 / a.rate))
            bare.append((time.perf_counter() - t0) * 1000)
    print(f"bare landmarker: p50 {pct(bare, 50)} ms, p95 {pct(bare, 95)} ms")

    rclpy.init()
    probe = Probe("bench")
    pub = probe.publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
    # 2. transport alone
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks/image_probe.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "probe ready"
    assert probe.wait_subscribers(pub)
    time.sleep(1.5)
    publish_at(pub, probe, frames[: min(n, 300)], a.rate, image_msg)
    time.sleep(1.0)
    proc.send_signal(2)
    transport = json.loads(proc.stdout.readline())["latency_ms"]
    proc.wait(10)
    print(f"image transport: {len(transport)}/{min(n, 300)} delivered, p50 {pct(transport, 50)} ms")

    # 3. the node, in today's default (multi_face: the tiled detector and a crop per face) and in
    # the previous default (the landmarker's own detector on the whole frame), in this same run
    probe.subscribe(FaceLandmarksArray, FACES_TOPIC)

    def node_run(params: dict) -> dict:
        probe.clear(FACES_TOPIC)
        with NodeProcess("face_mesh_node", "face_mesh", {"num_faces": 4, **params}) as node:
            assert node.wait_log("face mesh ready", 30), node.log
            assert probe.wait_subscribers(pub, 1)
            time.sleep(1.5)
            t_start = time.monotonic()
            cpu0 = _cpu_seconds(node.proc.pid)
            stamps = publish_at(pub, probe, frames, a.rate, image_msg)
            wall = time.monotonic() - t_start
            cpu1 = _cpu_seconds(node.proc.pid)
            time.sleep(1.0)
        own = set(stamps)
        got, lat = {}, []
        for t_arr, m in probe.received[FACES_TOPIC]:
            s = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
            if s in own:
                got[s] = m
                lat.append((t_arr - s) / 1e6)
        processed = len([s for s in stamps if s in got])
        faces = [len(got[s].faces) for s in stamps if s in got]
        proc_ms = [got[s].processing_time * 1000 for s in stamps if s in got]
        print(f"node {params}: {processed}/{len(stamps)} processed, latency p50 {pct(lat, 50)} ms")
        return {"frames_published": len(stamps), "frames_processed": processed,
                "processed_ratio": round(processed / len(stamps), 4), "latency_p50_ms": pct(lat, 50),
                "latency_p95_ms": pct(lat, 95), "node_processing_p50_ms": pct(proc_ms, 50),
                "node_cpu_share": round((cpu1 - cpu0) / wall, 3),
                "faces_per_frame_mean": round(float(np.mean(faces)), 3) if faces else 0}

    previous = node_run({"multi_face": False})
    default = node_run({"multi_face": True})
    probe.close()
    rclpy.try_shutdown()
    bare_p50, transport_p50 = pct(bare, 50), pct(transport, 50)
    res = {
        **default,
        "bare_p50_ms": bare_p50, "bare_p95_ms": pct(bare, 95), "transport_p50_ms": transport_p50,
        "transport_delivered_ratio": round(len(transport) / min(n, 300), 4),
        "latency_budget_ms": round(1.3 * bare_p50 + transport_p50, 2),
        "latency_ratio_to_bare_plus_transport": round(default["latency_p50_ms"] / (bare_p50 + transport_p50), 3),
        "whole_frame_detector": previous,
        "latency_ratio_to_whole_frame_detector": round(default["latency_p50_ms"] / previous["latency_p50_ms"], 3),
        "input": "640x480 bgr8 at %.0f Hz, %d frames of %s" % (a.rate, default["frames_published"], (a.video or asset_path("default_video")).name),
        "machine": f"{os.cpu_count()} cores", "command": command_line("python -m benchmarks.landmark_bench", argv),
    }
    # issue 16's target: the multi-face default costs at most 1.3x the whole-frame detector's latency
    # (the older budget against the bare landmarker is still reported: latency_ratio_to_bare_plus_transport)
    res["meets_targets"] = bool(res["processed_ratio"] >= 0.95 and res["latency_ratio_to_whole_frame_detector"] <= 1.3)
    write_result(a.out, res)
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
