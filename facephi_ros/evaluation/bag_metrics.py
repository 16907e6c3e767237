"""Scores of a replayed bag, from what was published and what came back (ROS-free).

Inputs, all keyed by the image stamp (ns) the messages carry:
  images: {stamp: publish wall time ns}            (every image the player published)
  truth: {stamp: (label index, segment id)}        (ground truth; empty for unlabelled bags)
  faces: {stamp: number of faces}                  (FaceLandmarksArray seen per frame)
  estimates: {stamp: (label index, confidence, arrival wall time ns)}  (best face per frame)
A frame with no estimate counts as wrong (like an image without a detected face offline).
Per-segment: the majority label over the second half of each segment (after the model had time
to react) against the segment's label.

Two readings of the same estimates (per_frame): the published label (after the calm label rule,
what a behaviour layer acts on) and the model's own top class from the probabilities each
estimate carries (what offline figures such as eval_lstm's score).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .metrics import classification_report, label_flips_per_minute, reaction_times


def per_frame(estimates: list, classes: list[str]) -> tuple[dict, dict]:
    """({stamp: (published label index, confidence, arrival)}, {stamp: (model's top class index,
    its probability, arrival)}) from (stamp, label, confidence, class_names, probabilities,
    arrival) tuples; per frame the face with the highest confidence. A label or class outside
    `classes` is -1 (wrong)."""
    published, top = {}, {}
    for stamp, label, conf, names, probs, arrival in estimates:
        if stamp in published and conf <= published[stamp][1]:
            continue
        published[stamp] = (classes.index(label) if label in classes else -1, float(conf), arrival)
        probs = np.asarray(probs, dtype=np.float64)
        if len(probs) == len(names) and len(probs) and np.all(np.isfinite(probs)):
            k = int(np.argmax(probs))
            top[stamp] = (classes.index(names[k]) if names[k] in classes else -1, float(probs[k]), arrival)
        else:
            top[stamp] = (-1, 0.0, arrival)
    return published, top


def segment_labels(pred: list[int], gt: list[int], segment: list) -> tuple[list[int], list[int]]:
    """(true label, predicted label) per segment, from per-frame predictions (-1: none), truths and
    segment ids in time order: the truth's majority over the segment, and the majority of the
    predictions over its second half (after the model had time to react; -1 when it has none)."""
    segs: dict = {}
    for i, k in enumerate(segment):
        segs.setdefault(k, []).append(i)
    seg_true, seg_pred = [], []
    for idx in segs.values():
        votes = Counter(pred[i] for i in idx[len(idx) // 2:] if pred[i] >= 0)
        seg_true.append(Counter(gt[i] for i in idx).most_common(1)[0][0])
        seg_pred.append(votes.most_common(1)[0][0] if votes else -1)
    return seg_true, seg_pred


def score(images: dict, truth: dict, faces: dict, estimates: dict, classes: list[str], rate: float | None = None) -> dict:
    stamps = sorted(images)
    n = len(stamps)
    res = {"frames_published": n,
           "frames_processed": sum(1 for s in stamps if s in faces),
           "frames_with_face": sum(1 for s in stamps if faces.get(s, 0) > 0),
           "frames_with_estimate": sum(1 for s in stamps if s in estimates)}
    res["processed_ratio"] = round(res["frames_processed"] / n, 4) if n else 0.0
    with_face = [s for s in stamps if faces.get(s, 0) > 0]
    res["estimate_ratio"] = round(sum(1 for s in with_face if s in estimates) / len(with_face), 4) if with_face else 0.0
    lat = np.array([(estimates[s][2] - images[s]) / 1e6 for s in stamps if s in estimates])
    res["latency_p50_ms"] = round(float(np.percentile(lat, 50)), 2) if lat.size else None
    res["latency_p95_ms"] = round(float(np.percentile(lat, 95)), 2) if lat.size else None
    times = [(s - stamps[0]) / 1e9 for s in stamps] if n else []
    pred = [estimates[s][0] if s in estimates else -1 for s in stamps]
    est_stamps = [s for s in stamps if s in estimates]
    res["flips_per_min"] = round(label_flips_per_minute([estimates[s][0] for s in est_stamps],
                                                        [(s - stamps[0]) / 1e9 for s in est_stamps]), 2) if est_stamps else 0.0
    if not truth:
        return res
    gt = [truth[s][0] for s in stamps]
    rep = classification_report(gt, pred, classes)
    res.update({"accuracy": round(rep["accuracy"], 4), "macro_f1": round(rep["macro_f1"], 4), "report": rep})
    seg_true, seg_pred = segment_labels(pred, gt, [truth[s][1] for s in stamps])
    srep = classification_report(seg_true, seg_pred, classes)
    res.update({"segment_accuracy": round(srep["accuracy"], 4), "segment_macro_f1": round(srep["macro_f1"], 4),
                "segments": len(seg_true), "segment_report": srep})
    changes = [i for i in range(1, n) if gt[i] != gt[i - 1]]
    rt = np.array(reaction_times(pred, gt, times, changes, hold=3))
    ok = rt[~np.isnan(rt)]
    res.update({"reaction_s": round(float(np.median(ok)), 3) if ok.size else None,
                "reaction_p90_s": round(float(np.percentile(ok, 90)), 3) if ok.size else None,
                "changes": len(changes), "changes_followed": int(ok.size)})
    return res
