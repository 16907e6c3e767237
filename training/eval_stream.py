"""Stability and responsiveness of the emotion estimate on streams (issue 3, item 7).

1. Real videos (../shared/data/faces/*.mp4|mov): MediaPipe + tracker + EmotionEstimator, the
   node's own code, with the LSTM and with the per-frame baseline: label flips per minute. The
   faces are landmarked as the face-mesh node does by default (--landmarker node: the multi-face
   finder with config/facephi.yaml's settings, crop views included, its scans run synchronously so
   that a run repeats exactly; --views overrides the views) or
   with MediaPipe's whole-frame detector in VIDEO mode (--landmarker whole-frame: multi_face
   false, and every figure recorded before 2026-12-05).
2. Labelled streams from FER2013 test faces: each face is held for --hold seconds at 30 Hz
   (camera-like jitter, as in training), then the next face of another class appears abruptly.
   Reaction time = seconds from a change until the LSTM's label equals the new truth for 3
   frames in a row, over the changes whose new face the model labels correctly by the end of
   its segment (a wrong label is an accuracy matter, not a reaction one; their share is
   reported too).

    python -m training.eval_stream      # -> docs/results/lstm_stream.json, timeline plots
    python -m training.eval_stream --hybrid   # appearance mode -> docs/results/appearance_stream.json

With --hybrid every face also carries its appearance vector (the face-mesh node's appearance
mode): on the videos the aligned crop of each frame is cut and embedded as the node does; on the
labelled streams each face carries the vector of its image's original rendering (build_appearance).
The estimators are then the hybrid LSTM and the hybrid per-frame model.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.sequences import make_sequences
from facephi_ros.emotion.estimator import EmotionEstimator
from facephi_ros.emotion.label_rule import ARGMAX, LabelRuleConfig
from facephi_ros.evaluation.metrics import (
    command_line,
    label_flips_per_minute,
    plot_timeline,
    reaction_times,
    write_result,
)
from facephi_ros.landmarks.landmarker import Landmarker
from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
from facephi_ros.landmarks.tracker import FaceTracker
from training.train_lstm import STREAM_AUGMENT

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
VIDEOS = ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov"]


def video_landmarker(kind: str, views: str | None = None):
    """The landmarker the videos go through: the face-mesh node's default (`node`, crop views
    from config/facephi.yaml unless `views` names others) or the whole-frame detector."""
    if kind == "whole-frame":
        return Landmarker(num_faces=2)
    return MultiFaceLandmarker(config=MultiFaceConfig.from_config_file(**({"views": views} if views else {})))


def video_labels(path: Path, estimators: dict, appearance=None, landmarker: str = "node",
                 views: str | None = None) -> tuple[dict, list[float], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = FaceTracker()
    labels = {k: [] for k in estimators}
    times = []
    k = 0
    with video_landmarker(landmarker, views) as lm:
        while True:
            ok, f = cap.read()
            if not ok:
                break
            t = k / fps
            rgb = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
            faces = lm.detect(rgb, int(t * 1000))
            ids, _ = tracker.update([x.bbox for x in faces], [x.landmarks for x in faces], t)
            inp = [(i, x.landmarks, x.blendshapes, x.matrix) for i, x in zip(ids, faces) if i][:1]
            if appearance is not None and inp:
                emb, logits = appearance(rgb, [inp[0][1]])
                inp = [inp[0] + (np.concatenate([emb[0], logits[0]]), appearance.classes)]
            h, w = f.shape[:2]
            for name, est in estimators.items():
                out = est.update(inp, w, h, t, now=t)
                if out:
                    labels[name].append(out[0].label)
            if inp:
                times.append(t)
            k += 1
    return labels, times, k / fps


def labelled_stream(split, n_segments: int, hold_frames: int, seed: int, pool: np.ndarray | None = None):
    """Raw-convention landmark frames (normalised faces with the y/z axes flipped back, identity
    matrix), blendshapes, truth labels and change indices; faces drawn from `pool` (indices of
    found faces; default every found face of the split)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    idx = np.nonzero(split.found)[0] if pool is None else np.asarray(pool)
    order, prev = [], -1
    while len(order) < n_segments:
        i = int(rng.choice(idx))
        if split.labels[i] != prev:
            order.append(i)
            prev = split.labels[i]
    lm = torch.from_numpy(split.norm_landmarks)
    bs = torch.from_numpy(split.blendshapes)
    a = torch.tensor(order)
    # assemble=False route: ask for landmarks+blendshapes separately by using the identity feature layout
    frames_lm, frames_bs = [], []
    for i in a:
        x, _ = make_sequences(lm, bs, torch.from_numpy(split.labels.astype(np.int64)), i[None], i[None], hold_frames,
                              STREAM_AUGMENT, gen, use_blendshapes=True, use_landmarks=True)
        frames_bs.append(x[0, :, :52].numpy())
        frames_lm.append(x[0, :, 52:].reshape(hold_frames, 478, 3).numpy())
    lm_all = np.concatenate(frames_lm) * np.array([1.0, -1.0, -1.0], np.float32)  # back to image axes
    truth = np.repeat(split.labels[order], hold_frames)
    changes = [k * hold_frames for k in range(1, n_segments)]
    return lm_all, np.concatenate(frames_bs), truth, changes, np.repeat(np.array(order), hold_frames)


def followed_changes(pred, truth, changes, hold: int) -> list[bool]:
    """Per true change: does `pred` give the new face's label at the end of its segment?"""
    return [pred[c + hold - 1] == truth[c + hold - 1] for c in changes]


def stream_scores(pred, truth, times, changes, hold: int, reference: list[bool] | None = None) -> dict:
    """Reaction and calm of one label sequence on a labelled stream: the seconds from each true
    change until the label equals the new truth for 3 frames in a row, over the changes whose new
    face is labelled right at the end of its segment (a wrong label is an accuracy matter), and
    label changes per minute. With `reference` (per change: scored or not, e.g. the changes the
    model's own argmax follows), those changes are scored instead and one never followed counts
    as slower than 1 s: a label rule must not lose a change that the model gets right."""
    pred = list(pred)
    rt = reaction_times(pred, list(truth), times, changes, hold=3)
    ok = reference if reference is not None else [not np.isnan(r) and f for r, f in
                                                  zip(rt, followed_changes(pred, truth, changes, hold))]
    vals = np.array([r if not np.isnan(r) else np.inf for r, o in zip(rt, ok) if o])
    fin = vals[np.isfinite(vals)]
    return {"median_s": round(float(np.median(vals)), 3) if len(fin) * 2 > len(vals) else None,
            "p90_s": round(float(np.percentile(vals, 90)), 3) if len(fin) >= 0.9 * len(vals) and len(vals) else None,
            "within_1s": round(float((vals <= 1.0).mean()), 3) if len(vals) else None,
            "changes_scored": int(len(vals)), "changes": len(changes),
            "flips_per_min": round(label_flips_per_minute(pred, times), 2),
            "frame_accuracy": round(float((np.array(pred) == truth).mean()), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--lstm", type=Path, default=Path("models/lstm_fer7"))
    ap.add_argument("--frame", type=Path, default=Path("models/frame_fer7"))
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds each face is held")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=None, help="default: docs/results/lstm_stream.json "
                    "(--hybrid: docs/results/appearance_stream.json)")
    ap.add_argument("--label-rule", type=float, nargs="+", default=None, metavar="X",
                    help="the published label's rule (default: the shipped one), e.g. the one tune_label_rule chose "
                         "for another --lstm: MARGIN HOLD_S SMOOTH_S [EVIDENCE] (three numbers: evidence 0, the "
                         "rule before 2026-12-05)")
    ap.add_argument("--hybrid", action="store_true", help="appearance mode: faces carry appearance vectors")
    ap.add_argument("--landmarker", choices=["node", "whole-frame"], default="node",
                    help="how the videos' faces are landmarked: as the face-mesh node does by default (the "
                         "multi-face finder, config/facephi.yaml) or with the whole-frame detector (multi_face: false)")
    ap.add_argument("--views", default=None, help="with --landmarker node: crop views in place of the config's, "
                                                  "comma-separated (e.g. plain)")
    a = ap.parse_args(argv)
    if a.label_rule is not None and len(a.label_rule) not in (3, 4):
        ap.error("--label-rule takes MARGIN HOLD_S SMOOTH_S [EVIDENCE]")
    a.out = a.out or Path("docs/results/appearance_stream.json" if a.hybrid else "docs/results/lstm_stream.json")
    prefix = "appearance_" if a.hybrid else ""  # the plots' names: the landmark run's are not overwritten
    rule = LabelRuleConfig(*a.label_rule, *([0.0] if len(a.label_rule) == 3 else [])) if a.label_rule else None
    torch.set_num_threads(2)
    appearance, app_test = None, None
    if a.hybrid:
        from facephi_ros.appearance.model import AppearanceModel

        appearance = AppearanceModel()

    def estimators():  # the LSTM with the shipped label rule, the same without it, the per-frame model's argmax
        if a.hybrid:  # the same three, the hybrid models answering for faces with a vector
            hyb, hyb_frame = a.lstm.parent / f"lstm_hybrid_{a.lstm.name.split('_')[-1]}", \
                a.frame.parent / f"frame_hybrid_{a.frame.name.split('_')[-1]}"
            return {"lstm": EmotionEstimator(a.lstm, hybrid_dir=hyb, label_rule=rule),
                    "lstm_argmax": EmotionEstimator(a.lstm, label_rule=ARGMAX, hybrid_dir=hyb),
                    "per_frame": EmotionEstimator(a.frame, label_rule=ARGMAX, hybrid_dir=hyb_frame)}
        return {"lstm": EmotionEstimator(a.lstm, label_rule=rule), "lstm_argmax": EmotionEstimator(a.lstm, label_rule=ARGMAX),
                "per_frame": EmotionEstimator(a.frame, label_rule=ARGMAX)}

    # 1. real videos
    videos, flips = {}, {"lstm": [], "lstm_argmax": [], "per_frame": []}
    total_s = 0.0
    for name in tqdm(VIDEOS, desc="videos"):
        labels, times, dur = video_labels(a.data / "faces" / name, estimators(), appearance, a.landmarker, a.views)
        if len(times) < 2:
            continue
        span = times[-1] - times[0]
        total_s += span
        videos[name] = {"seconds_with_face": round(span, 2)}
        for k in labels:
            f = label_flips_per_minute(labels[k], times)
            videos[name][f"flips_per_min_{k}"] = round(f, 2)
            flips[k].append(f * span)
        if name == VIDEOS[0]:
            ests = estimators()
            plot_timeline(times, labels, ests["lstm"].classes, a.out.parent / f"{prefix}timeline_wolfganglanger.png",
                          f"{name}: LSTM vs per-frame labels (no ground truth: a talking face)")
    fl_lstm = sum(flips["lstm"]) / total_s
    fl_frame = sum(flips["per_frame"]) / total_s
    fl_argmax = sum(flips["lstm_argmax"]) / total_s

    # 2. labelled streams with known change points
    split = load_split(a.features, "test", EmotionEstimator(a.lstm).classes)
    hold = int(round(a.hold * a.rate))
    lm, bs, truth, changes, shown = labelled_stream(split, a.segments, hold, seed=7)
    if a.hybrid:
        from facephi_ros.data.feature_files import load_appearance

        app_test = load_appearance(a.features, "test", split.paths)[0][:, 0]  # the original rendering's
    ests = estimators()
    classes = ests["lstm"].classes
    preds = {k: [] for k in ests}
    times = [k / a.rate for k in range(len(truth))]
    for k in tqdm(range(len(truth)), desc="labelled stream"):
        for name, est in ests.items():
            face = (1, lm[k], bs[k], np.eye(4)) + ((app_test[shown[k]], appearance.classes) if a.hybrid else ())
            out = est.update([face], 1.0, 1.0, times[k], now=times[k])
            preds[name].append(classes.index(out[0].label))
    # the label rule is scored on the changes the LSTM's own argmax follows; the others on their own
    reference = {"lstm": followed_changes(preds["lstm_argmax"], truth, changes, hold)}
    react = {name: stream_scores(preds[name], truth, times, changes, hold, reference=reference.get(name))
             for name in ests}
    span = slice(0, min(len(truth), 20 * hold))
    plot_timeline(times[span], {"truth": [classes[t] for t in truth[span]],
                                "LSTM": [classes[p] for p in preds["lstm"][span]],
                                "LSTM, argmax": [classes[p] for p in preds["lstm_argmax"][span]],
                                "per-frame": [classes[p] for p in preds["per_frame"][span]]},
                  classes, a.out.parent / f"{prefix}timeline_labelled_stream.png",
                  f"labelled stream of FER2013 test faces ({a.hold:.0f} s each, {a.rate:.0f} Hz): first 20 segments")
    talking = videos.get(VIDEOS[0], {})
    res = {
        "label_rule": asdict(ests["lstm"].rule.cfg),
        "videos_landmarker": a.landmarker if a.landmarker == "whole-frame" else
        f"node (multi-face finder, views {a.views or ','.join(MultiFaceConfig.from_config_file().views)})",
        "flips_per_min_talking_clip": talking.get("flips_per_min_lstm"),
        "flips_per_min_talking_clip_argmax": talking.get("flips_per_min_lstm_argmax"),
        "flips_per_min_talking_clip_per_frame": talking.get("flips_per_min_per_frame"),
        "flips_per_min_lstm": round(fl_lstm, 2), "flips_per_min_lstm_argmax": round(fl_argmax, 2),
        "flips_per_min_per_frame": round(fl_frame, 2),
        "flip_ratio_lstm_to_per_frame": round(fl_lstm / fl_frame, 3) if fl_frame else None,
        "reaction_s": react["lstm"]["median_s"], "reaction_p90_s": react["lstm"]["p90_s"],
        "reaction_within_1s": react["lstm"]["within_1s"], "videos": videos, "video_seconds": round(total_s, 1),
        "labelled_stream": {"segments": a.segments, "hold_s": a.hold, "rate_hz": a.rate,
                            "true_flips_per_min": round(label_flips_per_minute(list(truth), times), 2),
                            **{k: v for k, v in react.items()}},
        "models": {k: (e.hybrid_name if a.hybrid else e.name) for k, e in ests.items()},
        "command": command_line("python -m training.eval_stream", argv),
    }
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
