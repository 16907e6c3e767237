"""End-to-end evaluation by bag replay (issue 5): builds the bags, replays them through the
pipeline started by the project's launcher, and writes docs/results/bag_eval.json.

    python -m benchmarks.bag_eval [--per-class 50] [--hold 1.0]

1. default input: the bundled clip resized to 640x480, stamped at 30 Hz (472 frames, ~16 s),
   -> processed ratio, latency (image publish -> /emotion arrival), flips, CPU,
   with the bare landmarker timed on the same images in the same run;
2. a labelled FER2013-test stream: --per-class images of each class (stratified, seeded), each
   held --hold s at 30 Hz -> per-frame and per-segment accuracy, macro-F1, reaction time;
3. the offline evaluation (training/eval_lstm's stream scoring) on exactly those images, for
   the agreement check.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FER = REPO.parent / "shared" / "data" / "fer2013"


def offline_on_subset(bag: Path, features: Path) -> dict:
    """Offline LSTM accuracy on the images a labelled bag shows (no face = wrong)."""
    import torch

    from facephi_ros.bags.io import GT_TOPIC, BagReader
    from facephi_ros.data.feature_files import load_split
    from facephi_ros.emotion.estimator import DEFAULT_MODEL_DIR
    from facephi_ros.models.lstm import load_model
    from training.train_lstm import stream_probs

    with BagReader(bag) as r:
        files = []
        for _, _, _, _, m in r.messages([GT_TOPIC]):
            if not files or files[-1] != m.description:
                files.append(m.description)
    model, _ = load_model(DEFAULT_MODEL_DIR)
    d = load_split(features, "test", list(model.cfg.classes))
    index = {str(p): i for i, p in enumerate(d.paths)}
    idx = np.array([index[f] for f in files])
    found = d.found[idx]
    pred = np.full(len(idx), -1)
    if found.any():
        sel = idx[found]
        probs = stream_probs(model, torch.from_numpy(d.norm_landmarks[sel]), torch.from_numpy(d.blendshapes[sel]),
                             model.cfg.window)
        pred[found] = probs.argmax(1)
    return {"images": int(len(idx)), "accuracy": round(float((pred == d.labels[idx]).mean()), 4),
            "detection_rate": round(float(found.mean()), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--hold", type=float, default=1.0)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bags")
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "bag_eval.json")
    ap.add_argument("--reuse-fer", action="store_true", help="reuse the last FER2013 replay in --work (no new replay)")
    a = ap.parse_args(argv)
    from facephi_ros.assets import asset_path
    from facephi_ros.bags.evaluate import evaluate_bag
    from facephi_ros.bags.make import StreamSpec, bag_from_images, bag_from_video
    from facephi_ros.evaluation.metrics import command_line, write_result

    a.work.mkdir(parents=True, exist_ok=True)
    vbag, fbag = a.work / "default_640x480", a.work / f"fer2013_test_{a.per_class}pc"
    if not vbag.exists():
        bag_from_video(asset_path("default_video"), vbag, width=640, height=480, rate=30.0)
    if not fbag.exists():
        bag_from_images(FER, "test", fbag, StreamSpec(hold_s=a.hold, transition_s=0.1, rate=30.0, per_class=a.per_class))
    video = evaluate_bag(vbag, a.work / "eval_default")
    fer_json = a.work / "eval_fer2013" / "bag_eval.json"
    fer = json.loads(fer_json.read_text()) if a.reuse_fer and fer_json.exists() else evaluate_bag(fbag, a.work / "eval_fer2013")
    for sub in ("eval_default", "eval_fer2013"):
        for png in ("timeline.png", "confusion.png"):
            src = a.work / sub / png
            if src.exists():
                shutil.copy(src, a.out.parent / f"bag_{sub.split('_', 1)[1]}_{png}")
    offline = offline_on_subset(fbag, a.features) if a.features.exists() else None
    res = {
        # the labelled FER2013-test stream
        "accuracy": fer["accuracy"], "macro_f1": fer["macro_f1"], "segment_accuracy": fer["segment_accuracy"],
        "segment_macro_f1": fer["segment_macro_f1"], "reaction_s": fer["reaction_s"], "reaction_p90_s": fer["reaction_p90_s"],
        "fer_flips_per_min": fer["flips_per_min"], "fer_segments": fer["segments"], "fer_frames": fer["frames_published"],
        "offline_same_images": offline,
        # the default input, 640x480 at 30 Hz
        "flips_per_min": video["flips_per_min"], "latency_p50_ms": video["latency_p50_ms"], "latency_p95_ms": video["latency_p95_ms"],
        "processed_ratio": video["processed_ratio"], "estimate_ratio": video["estimate_ratio"],
        "frames_reaching_emotion": round(video["frames_with_estimate"] / video["frames_published"], 4),
        "bare_landmarker_p50_ms": video["bare_landmarker_p50_ms"], "cpu_share": video["cpu_share"],
        "cpu_share_total": video["cpu_share_total"], "video_frames": video["frames_published"],
        "fer_latency_p50_ms": fer["latency_p50_ms"], "fer_processed_ratio": fer["processed_ratio"],
        "command": command_line("python -m benchmarks.bag_eval", argv),
        "bags": {"default": str(vbag.relative_to(REPO)), "fer2013": str(fbag.relative_to(REPO))},
    }
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
