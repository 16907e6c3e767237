"""Crop views on a labelled stream, through the node's landmarking: held-out TRAINING faces (the
landmark model's validation share), each held `--hold` s at one place of a 640x480 frame of the
empty room with the bag's per-frame jitter, then the next face (another class) at the same
place, as in the labelled bags. Every `--views` setting landmarks the same frames with the
MultiFaceLandmarker built from config/facephi.yaml (its landmark_views replaced; scans synchronous,
so that a run repeats exactly), and the shipped
LSTM reads them through EmotionEstimator twice: with the shipped label rule (the published label)
and its argmax (the probabilities' top class). Reported per setting: label changes per minute,
true changes followed within 1 s, frames right, segments right (majority of each segment's
second half). Settings run side by side, one process each (at most --workers).

    python -m benchmarks.landmark_views --views plain --views plain,mirror,zoom-in,mirror-zoom-out
    # -> docs/results/landmark_views.json (about 8 min on 2 cores)

The test split is never read: this is where a crop-view setting is chosen (docs/faces.md).
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def stream_run(views: str, segments: int, hold_s: float, face_px: tuple[int, int], seed: int = 0) -> dict:
    """One setting's scores on the stream (the same faces, places and jitter for every setting)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from tqdm import tqdm

    from benchmarks.faces import data_dir
    from benchmarks.small_face_gap import validation_images
    from facephi_ros.bags.make import StreamSpec, camera_jitter, small_face_placer
    from facephi_ros.emotion.estimator import DEFAULT_MODEL_DIR, EmotionEstimator
    from facephi_ros.emotion.label_rule import ARGMAX
    from facephi_ros.evaluation.bag_metrics import segment_labels
    from facephi_ros.evaluation.metrics import label_flips_per_minute
    from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
    from facephi_ros.models.lstm import load_model
    from training.eval_stream import stream_scores

    torch.set_num_threads(1)
    model, meta = load_model(DEFAULT_MODEL_DIR)
    classes = list(model.cfg.classes)
    idx, labels, data = validation_images(REPO / "runs/features/fer2013", classes, meta["training_config"], 905)
    rng = np.random.default_rng(seed)
    order, prev = [], -1
    while len(order) < segments:  # each face of another class than the one before
        j = int(rng.integers(len(idx)))
        if labels[j] != prev:
            order.append(j)
            prev = labels[j]
    spec = StreamSpec(canvas=(640, 480), face_px=face_px, background=str(data_dir() / "faces" / "no_face.mp4"),
                      face_moves=False, seed=seed)
    place = small_face_placer(spec, np.random.default_rng(seed + 1))
    jitter = np.random.default_rng(seed + 2)
    hold = int(round(hold_s * 30))
    est = {"label": EmotionEstimator(None), "argmax": EmotionEstimator(None, label_rule=ARGMAX)}
    pred: dict[str, list[int]] = {k: [] for k in est}
    truth, times = [], []
    root = REPO.parent / "shared" / "data" / "fer2013"
    k = 0
    with MultiFaceLandmarker(config=MultiFaceConfig.from_config_file(views=views)) as mf:
        for s, j in enumerate(tqdm(order, desc=views, unit="face")):
            canvas = place(str(root / str(data.paths[idx][j])), s)
            for _ in range(hold):
                rgb = np.ascontiguousarray(camera_jitter(canvas, jitter, spec)[:, :, ::-1])
                t = k / 30
                k += 1
                meshes = mf.detect(rgb, timestamp_ms=t * 1000)
                truth.append(int(labels[j]))
                times.append(t)
                for name, e in est.items():
                    if meshes:
                        m = meshes[0]
                        out = e.update([(0, m.landmarks, m.blendshapes, m.matrix)], 640, 480, t, now=t)[0]
                        pred[name].append(int(np.argmax(out.probs)) if name == "argmax" else classes.index(out.label))
                    else:  # no face this frame: the last answer stands
                        pred[name].append(pred[name][-1] if pred[name] else -1)
    truth_a = np.array(truth)
    changes = [i * hold for i in range(1, len(order))]
    res: dict = {"views": views, "true_flips_per_min": round(label_flips_per_minute(truth, times), 2)}
    segment = [i // hold for i in range(len(truth))]
    for name in ("label", "argmax"):
        sc = stream_scores(pred[name], truth_a, times, changes, hold)
        seg_true, seg_pred = segment_labels(pred[name], truth, segment)  # as the bag evaluation scores segments
        sc["segment_accuracy"] = round(float((np.array(seg_pred) == np.array(seg_true)).mean()), 4)
        res[name] = sc
    return res


def main(argv=None) -> int:
    from facephi_ros.evaluation.metrics import command_line, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", action="append", default=[], help="a comma-separated crop-view list (repeatable)")
    ap.add_argument("--segments", type=int, default=300)
    ap.add_argument("--hold", type=float, default=2.0, help="seconds each face is held")
    ap.add_argument("--face-px", type=int, nargs=2, default=[100, 160], metavar=("MIN", "MAX"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/landmark_views.json")
    a = ap.parse_args(argv)
    settings = a.views or ["plain", "plain,mirror,zoom-in,mirror-zoom-out"]
    with ProcessPoolExecutor(min(a.workers, len(settings))) as pool:
        runs = list(pool.map(stream_run, settings, [a.segments] * len(settings), [a.hold] * len(settings),
                             [tuple(a.face_px)] * len(settings)))
    for r in runs:
        print(r["views"], {k: r[k] for k in ("label", "argmax")})
    write_result(a.out, {"stream": {"segments": a.segments, "hold_s": a.hold, "face_px": a.face_px,
                                    "faces": "held-out training images (the landmark model's validation share)"},
                         "runs": {r["views"]: r for r in runs},
                         "command": command_line("python -m benchmarks.landmark_views", argv)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
