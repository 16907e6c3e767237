"""Benchmark: EmotionEstimator cost per face per frame on this CPU (issue 3: at most 2 ms), with
the face-mesh landmarker's cost on the same machine in the same run for scale.

    python -m benchmarks.emotion_bench [--faces 1 2 4] [--frames 600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from facephi_ros.emotion.estimator import EmotionEstimator
from facephi_ros.evaluation.metrics import command_line, write_result
from facephi_ros.landmarks.landmarker import Landmarker

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/emotion_bench.json")
    a = ap.parse_args(argv)
    rgb = cv2.cvtColor(cv2.imread(str(a.data / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    with Landmarker(video=False, num_faces=1) as lm:
        face = lm.detect(rgb)[0]
    rng = np.random.default_rng(0)
    res = {"per_faces": {}}
    for n in a.faces:
        est = EmotionEstimator()
        times = []
        for k in range(a.frames):
            faces = [(i + 1, face.landmarks + rng.normal(0, 1e-3, face.landmarks.shape).astype(np.float32),
                      face.blendshapes, face.matrix) for i in range(n)]
            t0 = time.perf_counter()
            est.update(faces, rgb.shape[1], rgb.shape[0], k / 30, now=k / 30)
            times.append(time.perf_counter() - t0)
        t = np.array(times[50:]) * 1000  # after the windows are full
        res["per_faces"][n] = {"frame_p50_ms": round(float(np.median(t)), 3), "frame_p95_ms": round(float(np.percentile(t, 95)), 3),
                               "per_face_p50_ms": round(float(np.median(t)) / n, 3)}
        print(f"{n} face(s): {np.median(t):.3f} ms per frame, {np.median(t) / n:.3f} ms per face (p95 {np.percentile(t, 95):.3f})")
    # the landmarker for scale, timed after the estimator so that its thread pools cannot
    # disturb the estimator's timing
    with Landmarker(num_faces=1) as lm:
        frame = cv2.resize(rgb, (640, 480))
        t_lm = []
        for k in range(200):
            t0 = time.perf_counter()
            lm.detect(frame, 33 * (k + 1))
            t_lm.append(time.perf_counter() - t0)
    res["landmarker_p50_ms"] = round(1000 * float(np.median(t_lm)), 3)
    one = res["per_faces"][a.faces[0]]["per_face_p50_ms"]
    res.update({"per_face_p50_ms": one, "ratio_to_landmarker": round(one / res["landmarker_p50_ms"], 3),
                "window": EmotionEstimator().window, "meets_2ms": bool(max(v["per_face_p50_ms"] for v in res["per_faces"].values()) <= 2.0),
                "command": command_line("python -m benchmarks.emotion_bench", argv)})
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
