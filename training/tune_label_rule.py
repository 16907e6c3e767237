"""Choose the published label's rule (facephi_ros.emotion.label_rule) on held-out training faces.

    python -m training.tune_label_rule      # -> docs/results/label_rule.json

A labelled stream is built from the validation hold-out of the training split (the images
train_lstm never fits; the test split is not read): each face held --hold seconds at 30 Hz with a
still camera's jitter, then a face of another class. The shipped LSTM runs over it once; every
rule of the grid is then applied to its probabilities. A rule is scored on the true changes that
the model's own argmax follows (it labels the new face right at the end of its segment): the
share of them whose new label the rule publishes within 1 s (3 frames in a row; never = slower).
Among the rules that follow at least --min-within-1s of them, those within --flips-tolerance
changes a minute of the calmest are calm enough; of these the rule whose label is right on the
most frames is chosen (it reacts soonest without changing more often).
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
from facephi_ros.emotion.label_rule import ARGMAX, LabelRuleConfig, apply_rule
from facephi_ros.evaluation.metrics import command_line, label_flips_per_minute, write_result
from training.eval_stream import followed_changes, labelled_stream, stream_scores
from training.train_lstm import validation_split

MARGINS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]
HOLDS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
SMOOTHS = [0.0, 0.1, 0.2, 0.3]
EVIDENCES = [0.0, 0.025, 0.05, 0.1, 0.15, 0.2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--model", type=Path, default=Path("models/lstm_fer7"))
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds each face is held")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--min-within-1s", type=float, default=0.97,
                    help="share of scored true changes that must be followed within 1 s (the issue asks 0.95)")
    ap.add_argument("--flips-tolerance", type=float, default=0.5,
                    help="changes a minute above the calmest rule still counted as calm (0.5: 5 changes in the "
                         "10 min stream); among the calm rules the most frames right wins")
    ap.add_argument("--out", type=Path, default=Path("docs/results/label_rule.json"))
    a = ap.parse_args(argv)
    est = EmotionEstimator(a.model, label_rule=ARGMAX)
    split = load_split(a.features, "train", est.classes)
    _, val_idx = validation_split(est.meta["training_config"], split)
    hold = int(round(a.hold * a.rate))
    lm, bs, truth, changes, _ = labelled_stream(split, a.segments, hold, seed=11, pool=val_idx[split.found[val_idx]])
    times = np.arange(len(truth)) / a.rate
    probs = np.stack([est.update([(1, lm[k], bs[k], np.eye(4))], 1.0, 1.0, times[k], now=times[k])[0].probs
                      for k in tqdm(range(len(truth)), desc="validation stream")])
    # every rule is scored on the changes the model's own argmax follows (right at the end of the segment)
    reference = followed_changes(list(probs.argmax(1)), truth, changes, hold)
    grid = []
    for m, h, sm, ev in tqdm(list(itertools.product(MARGINS, HOLDS, SMOOTHS, EVIDENCES)), desc="rules"):
        cfg = LabelRuleConfig(m, h, sm, ev)
        grid.append({**asdict(cfg), **stream_scores(apply_rule(probs, times, cfg), truth, list(times), changes, hold,
                                                    reference=reference)})
    ok = [g for g in grid if g["within_1s"] is not None and g["within_1s"] >= a.min_within_1s]
    calmest = min(g["flips_per_min"] for g in ok)
    # changes a minute within --flips-tolerance of the calmest count as calm (the stream's resolution);
    # among those the rule whose label is right on the most frames wins (ties: the smaller settings)
    calm = [g for g in ok if g["flips_per_min"] <= calmest + a.flips_tolerance + 1e-9]
    settings = list(asdict(ARGMAX))  # the rule's fields, in order
    best = min(calm, key=lambda g: (-g["frame_accuracy"], g["flips_per_min"], *(g[k] for k in settings)))
    argmax = next(g for g in grid if all(g[k] == 0 for k in settings))
    res = {"model": str(a.model), "stream": {"faces_from": "validation hold-out of the FER2013 training split",
                                             "segments": a.segments, "hold_s": a.hold, "rate_hz": a.rate,
                                             "true_flips_per_min": round(label_flips_per_minute(list(truth), list(times)), 2)},
           "criterion": f"within_1s >= {a.min_within_1s}; label changes per minute at most {a.flips_tolerance} above the "
                        "fewest of those; then the most frames right",
           "chosen": best, "argmax": argmax, "grid": grid, "command": command_line("python -m training.tune_label_rule", argv)}
    print(f"argmax: {argmax['flips_per_min']} changes/min, within 1 s {argmax['within_1s']}")
    print(f"chosen: margin {best['margin']}, hold {best['hold_s']} s, smooth {best['smooth_s']} s, "
          f"evidence {best['evidence']} (probability x s): "
          f"{best['flips_per_min']} changes/min (truth {res['stream']['true_flips_per_min']}), within 1 s {best['within_1s']}")
    write_result(a.out, res)
    print(yaml.safe_dump({f"label_{k}": best[k] for k in settings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
