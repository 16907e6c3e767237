"""Reliability under load (issue 6): each figure into docs/results/reliability.json.

  python -m benchmarks.reliability [--soak 600] [--skip-soak]

* overload: the face-mesh node fed 640x480 frames at 1x, 2x and 4x its measured capacity:
  latency (stamp -> landmarks) stays bounded because the newest frame wins; processed share;
* many faces: 10 real faces composed into one 1280x720 frame: faces found, per-face cost,
  ids unique and stable over 60 frames;
* soak: camera + face mesh + emotion on a stream where a face appears and disappears every
  few seconds, for --soak seconds: RSS of each node at start and end, CPU share.
Fuzzing, recorder stops and privacy are tests (test/test_fuzz.py, test_bags.py, test_privacy.py);
this script adds the fuzz counts from the last test run when runs/fuzz_counts.json exists.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "faces"
sys.path.insert(0, str(REPO / "test"))


def pct(a, q):
    return round(float(np.percentile(a, q)), 2) if len(a) else None


def feed(probe, pub, frames, rate, seconds, image_msg):
    """Publish `frames` cyclically at `rate` for `seconds`; returns the stamps (ns)."""
    stamps, period, t_next = [], 1.0 / rate, time.monotonic()
    t_end = t_next + seconds
    k = 0
    while time.monotonic() < t_end:
        st = probe.now()
        stamps.append(st.sec * 10**9 + st.nanosec)
        pub.publish(image_msg(frames[k % len(frames)], st, encoding="bgr8"))
        k += 1
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    return stamps


def collect(probe, topic, stamps):
    own = set(stamps)
    got = {}
    for t_arr, m in probe.received.get(topic, []):
        s = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        if s in own:
            got[s] = (t_arr, m)
    return got


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--soak", type=float, default=600.0, help="soak seconds")
    ap.add_argument("--skip-soak", action="store_true")
    ap.add_argument("--load-seconds", type=float, default=12.0)
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/reliability.json")
    a = ap.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import psutil
    import rclpy
    from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray
    from rosnodes import NodeProcess, Probe, image_msg, read_video
    from sensor_msgs.msg import Image

    from facephi_ros.data.compose import face_crops, grid_frame
    from facephi_ros.evaluation.metrics import command_line
    from facephi_ros.nodes.common import (
        EMOTION_TOPIC,
        FACES_TOPIC,
        IMAGE_TOPIC,
        SENSOR_QOS,
    )

    res = {"command": command_line("python -m benchmarks.reliability", argv),
           "machine": f"{os.cpu_count()} cores"}
    rclpy.init()
    probe = Probe("reliability")
    pub = probe.publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
    probe.subscribe(FaceLandmarksArray, FACES_TOPIC)
    frames = [cv2.resize(f, (640, 480)) for f in read_video(DATA / "WolfgangLanger_Pexels.mp4", 120)]  # RGB: image_msg converts

    # --- overload -------------------------------------------------------------------------
    with NodeProcess("face_mesh_node", "face_mesh", {"num_faces": 4}) as fm:
        assert fm.wait_log("face mesh ready", 30)
        assert probe.wait_subscribers(pub)
        time.sleep(1.5)
        probe.received[FACES_TOPIC] = []
        st = feed(probe, pub, frames, 15.0, 6.0, image_msg)
        time.sleep(1.0)
        got = collect(probe, FACES_TOPIC, st)
        capacity = 1000.0 / np.median([m.processing_time * 1000 for _, m in got.values()])
        res["face_mesh_capacity_hz"] = round(float(capacity), 1)
        res["overload"] = {}
        for factor in (1, 2, 4):
            rate = capacity * factor
            probe.received[FACES_TOPIC] = []
            cpu0 = sum(psutil.Process(fm.proc.pid).cpu_times()[:2])
            t0 = time.monotonic()
            st = feed(probe, pub, frames, rate, a.load_seconds, image_msg)
            wall = time.monotonic() - t0
            cpu1 = sum(psutil.Process(fm.proc.pid).cpu_times()[:2])
            time.sleep(1.0)
            got = collect(probe, FACES_TOPIC, st)
            lat = [(t - s) / 1e6 for s, (t, _) in got.items()]
            half = len(st) // 2  # second half: is latency growing (a backlog) or flat?
            lat1 = [(got[s][0] - s) / 1e6 for s in st[:half] if s in got]
            lat2 = [(got[s][0] - s) / 1e6 for s in st[half:] if s in got]
            res["overload"][f"{factor}x"] = {
                "input_hz": round(rate, 1), "published": len(st), "processed": len(got),
                "processed_ratio": round(len(got) / len(st), 3), "dropped_reported": int(sum(m.dropped_frames for _, m in got.values())),
                "latency_p50_ms": pct(lat, 50), "latency_p95_ms": pct(lat, 95), "latency_max_ms": pct(lat, 100),
                "latency_p50_first_half_ms": pct(lat1, 50), "latency_p50_second_half_ms": pct(lat2, 50),
                "cpu_share": round((cpu1 - cpu0) / wall, 3)}
            print(f"overload {factor}x:", res["overload"][f"{factor}x"], flush=True)

    # --- many faces -----------------------------------------------------------------------
    sources = [DATA / n for n in ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg",
                                  "45-m7-di-ph.jpg", "multi_face.jpg")]
    sources += [read_video(DATA / v, 1)[0] for v in ("WolfgangLanger_Pexels.mp4", "single_face.mp4")]
    sources.append(read_video(DATA / "noface_face.mov")[130])  # the face is in from frame 96
    # 280 px: the largest that fits 5 x 2 in 1280x720. MediaPipe's short-range detector sees the
    # frame at 128 px, so smaller faces are missed (130 px: none of 10 found; 250 px: 5 of 10).
    crops = face_crops(sources, height=280)[:10]
    grid = grid_frame(crops, cols=5, size=(1280, 720))
    # IMAGE mode (video_mode false): the detector runs on every frame; in VIDEO mode MediaPipe
    # kept tracking a median of 1 of these 10 faces
    with NodeProcess("face_mesh_node", "face_mesh_many", {"num_faces": 12, "video_mode": False, "multi_face": False}) as fm:
        assert fm.wait_log("face mesh ready", 30)
        assert probe.wait_subscribers(pub)
        time.sleep(1.5)
        probe.received[FACES_TOPIC] = []
        st = feed(probe, pub, [grid], 5.0, 12.0, image_msg)
        time.sleep(1.5)
        got = collect(probe, FACES_TOPIC, st)
    arrays = [m for _, m in got.values()]
    n_faces = [len(m.faces) for m in arrays]
    per_frame_ids = [[f.face_id for f in m.faces] for m in arrays]
    stable = {tuple(sorted(i)) for i in per_frame_ids[5:]}
    res["many_faces"] = {"video_mode": False, "faces_composed": len(crops), "faces_found_median": int(np.median(n_faces)) if n_faces else 0,
                         "frame_ms_p50": pct([m.processing_time * 1000 for m in arrays], 50),
                         "per_face_ms_p50": round(pct([m.processing_time * 1000 for m in arrays], 50) / max(1, np.median(n_faces)), 2),
                         "ids_unique_in_every_frame": all(len(set(i)) == len(i) for i in per_frame_ids),
                         "id_sets_after_warmup": len(stable), "frames": len(arrays)}
    print("many faces:", res["many_faces"], flush=True)

    # --- soak -----------------------------------------------------------------------------
    if not a.skip_soak:
        face = read_video(DATA / "single_face.mp4", size=(640, 480))
        empty = read_video(DATA / "no_face.mp4", size=(640, 480))
        probe.subscribe(EmotionEstimate, EMOTION_TOPIC)
        with NodeProcess("face_mesh_node", "face_mesh_soak") as fm, NodeProcess("emotion_node", "emotion_soak") as em:
            assert fm.wait_log("face mesh ready", 30) and em.wait_log("emotion model", 30)
            assert probe.wait_subscribers(pub)
            time.sleep(2.0)
            procs = {"face_mesh": psutil.Process(fm.proc.pid), "emotion": psutil.Process(em.proc.pid)}
            # warm up one cycle, then measure
            feed(probe, pub, face + empty, 30.0, 10.0, image_msg)
            rss0 = {k: p.memory_info().rss for k, p in procs.items()}
            cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
            t0 = time.monotonic()
            samples = []
            t_end = t0 + a.soak
            while time.monotonic() < t_end:  # faces appear and disappear: 2.4 s face, 3.2 s none
                feed(probe, pub, face + empty, 30.0, min(60.0, t_end - time.monotonic()), image_msg)
                samples.append({k: p.memory_info().rss for k, p in procs.items()})
                probe.received[FACES_TOPIC] = []
                probe.received[EMOTION_TOPIC] = []
            wall = time.monotonic() - t0
            rss1 = {k: p.memory_info().rss for k, p in procs.items()}
            cpu1 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
            alive = fm.alive() and em.alive()
        res["soak"] = {"seconds": round(wall, 1), "nodes_alive_at_end": alive,
                       "rss_start_mb": {k: round(v / 2**20, 1) for k, v in rss0.items()},
                       "rss_end_mb": {k: round(v / 2**20, 1) for k, v in rss1.items()},
                       "rss_growth_mb": {k: round((rss1[k] - rss0[k]) / 2**20, 1) for k in rss0},
                       "rss_per_minute_mb": {k: [round(s[k] / 2**20, 1) for s in samples] for k in rss0},
                       "cpu_share": {k: round((cpu1[k] - cpu0[k]) / wall, 3) for k in cpu0}}
        print("soak:", {k: v for k, v in res["soak"].items() if k != "rss_per_minute_mb"}, flush=True)
    probe.close()
    rclpy.try_shutdown()
    fuzz = REPO / "runs" / "fuzz_counts.json"
    if fuzz.exists():
        res["fuzz"] = json.loads(fuzz.read_text())
    old = json.loads(a.out.read_text()) if a.out.exists() else {}
    old.update(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(old, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
