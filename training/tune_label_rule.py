"""Choose the published label's rule (facephi_ros.emotion.label_rule) on held-out training faces.

    python -m training.tune_label_rule      # -> docs/results/label_rule.json

A labelled stream is built from the validation hold-out of the training split (the images
train_lstm never fits; the test split is not read): each face held --hold seconds at 30 Hz with a
still camera's jitter, then a face of another class. The shipped LSTM runs over it once; every
rule of the grid is then applied to its probabilities. A rule is scored on the true changes that
the model's own argmax follows (it labels the new face right at the end of its segment): the
share of them whose new label the rule publishes within 1 s (3 frames in a row; never = slower).
The chosen rule has the fewest label changes per minute among those that follow at least
--min-within-1s of them; ties go to the smaller margin, hold and smoothing.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.emotion.estimator import EmotionEstimator
from facephi_ros.emotion.label_rule import LabelRuleConfig, apply_rule
from facephi_ros.evaluation.metrics import command_line, label_flips_per_minute, write_result
from training.eval_stream import ARGMAX, followed_changes, labelled_stream, stream_scores
from training.train_lstm import holdout

MARGINS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]
HOLDS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
SMOOTHS = [0.0, 0.1, 0.2, 0.3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--model", type=Path, default=Path("models/lstm_fer7"))
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds each face is held")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--min-within-1s", type=float, default=0.97,
                    help="share of scored true changes that must be followed within 1 s (the issue asks 0.95)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/label_rule.json"))
    a = ap.parse_args(argv)
    est = EmotionEstimator(a.model, label_rule=ARGMAX)
    tc = est.meta.get("training_config", {}).get("train", {})
    split = load_split(a.features, "train", est.classes)
    _, val_idx = holdout(split.found, split.found_any, tc.get("val_fraction", 0.1),
                         np.random.default_rng(tc.get("seed", 0)))
    hold = int(round(a.hold * a.rate))
    lm, bs, truth, changes, _ = labelled_stream(split, a.segments, hold, seed=11, pool=val_idx[split.found[val_idx]])
    times = np.arange(len(truth)) / a.rate
    probs = np.stack([est.update([(1, lm[k], bs[k], np.eye(4))], 1.0, 1.0, times[k], now=times[k])[0].probs
                      for k in tqdm(range(len(truth)), desc="validation stream")])
    # every rule is scored on the changes the model's own argmax follows (right at the end of the segment)
    reference = followed_changes(list(probs.argmax(1)), truth, changes, hold)
    grid = []
    for m, h, sm in tqdm(list(itertools.product(MARGINS, HOLDS, SMOOTHS)), desc="rules"):
        cfg = LabelRuleConfig(m, h, sm)
        grid.append({**asdict(cfg), **stream_scores(apply_rule(probs, times, cfg), truth, list(times), changes, hold,
                                                    reference=reference)})
    ok = [g for g in grid if g["within_1s"] is not None and g["within_1s"] >= a.min_within_1s]
    best = min(ok, key=lambda g: (g["flips_per_min"], g["margin"], g["hold_s"], g["smooth_s"]))
    argmax = next(g for g in grid if g["margin"] == g["hold_s"] == g["smooth_s"] == 0)
    res = {"model": str(a.model), "stream": {"faces_from": "validation hold-out of the FER2013 training split",
                                             "segments": a.segments, "hold_s": a.hold, "rate_hz": a.rate,
                                             "true_flips_per_min": round(label_flips_per_minute(list(truth), list(times)), 2)},
           "criterion": f"fewest label changes per minute with within_1s >= {a.min_within_1s}",
           "chosen": best, "argmax": argmax, "grid": grid, "command": command_line("python -m training.tune_label_rule", argv)}
    print(f"argmax: {argmax['flips_per_min']} changes/min, within 1 s {argmax['within_1s']}")
    print(f"chosen: margin {best['margin']}, hold {best['hold_s']} s, smooth {best['smooth_s']} s: "
          f"{best['flips_per_min']} changes/min (truth {res['stream']['true_flips_per_min']}), within 1 s {best['within_1s']}")
    write_result(a.out, res)
    print(yaml.safe_dump({"label_margin": best["margin"], "label_hold_s": best["hold_s"], "label_smooth_s": best["smooth_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
