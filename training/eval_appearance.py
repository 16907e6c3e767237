"""Evaluate the appearance mode's hybrid models on the FER2013 test split, beside the CNN alone,
the landmark-only models and the `fer` peer.

The protocol is eval_lstm's: all 7,178 test images (4,254 for happy / sad / neutral), no face =
wrong, each face shown as a still face to a camera: 16 frames, each one of the image's six
renderings in which a face was found, with mild pose jitter and landmark noise (seeded). In
appearance mode each frame also carries the appearance network's vector of that rendering's
eye-aligned crop (python -m training.build_appearance), at the precision the node runs here
(int8 on x86). Beside the hybrid:
  * the CNN alone on the same crops: its class scores averaged over the found renderings;
  * the landmark-only model (models/lstm_fer7, _fer3) on the same streams;
  * the hybrid's per-frame model, averaged over the renderings, over the same 16-frame stream,
    and on the original rendering;
  * the `fer` package's mini-Xception: 65.4% on FER2013 test (issue 18's measurement, not rerun);
  * the hybrid and the CNN alone with the float network's vectors (CPUs without x86 int8
    kernels), when test_appearance_float.npz exists (build_appearance --precision float).
Also the CNN's cost per face on this CPU (batch 1, crop cut included; two threads, the face-mesh
node's default, and one), against the float network in the same run.

    python -m training.eval_appearance     # -> docs/results/appearance.json + confusion plots

--validation scores the same models, in the same protocol, on the hybrid models' validation
faces instead (the teacher's held-out 10% of the training split whose clean rendering shows a
face, as train_lstm validates them), and adds late fusions of the hybrid with the CNN alone
(their log-probabilities weighted): what to choose between them, without the test split.

    python -m training.eval_appearance --validation   # -> docs/results/appearance_validation.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from facephi_ros.data.feature_files import load_appearance, load_split
from facephi_ros.data.sequences import mean_over_found
from facephi_ros.evaluation.metrics import classification_report, command_line, median_ms, plot_confusion, write_result
from facephi_ros.models.lstm import load_model
from training.eval_lstm import per_frame_stream_mean
from training.train_lstm import stream_probs

FER_PEER_ACC7 = 0.654  # the `fer` package's mini-Xception on FER2013 test (issue 18)


FUSION_WEIGHTS = (0.25, 0.5, 0.75)  # --validation: the hybrid's share of the fused log-probabilities


def evaluate(models: Path, features: Path, tag: str, plots: Path | None, precision_tag: str = "",
             validation: bool = False) -> dict:
    hybrid, _ = load_model(models / f"lstm_hybrid_{tag}")
    frame, _ = load_model(models / f"frame_hybrid_{tag}")
    landmark, _ = load_model(models / f"lstm_{tag}")
    classes = list(hybrid.cfg.classes)
    split = "train" if validation else "test"
    d = load_split(features, split, classes, views=True)
    rows = np.ones(len(d.labels), bool)  # the images scored
    if validation:
        from training.train_lstm import teacher_holdout

        rows[:] = False
        rows[teacher_holdout(features, d)[1]] = True
    app, info = load_appearance(features, split, d.paths, precision_tag)
    if info["classes"] != hybrid.cfg.appearance["classes"]:
        raise SystemExit(f"appearance file classes {info['classes']} differ from the model's")
    fa = d.found_any & rows
    vlm, vbs = torch.from_numpy(d.view_landmarks[fa]), torch.from_numpy(d.view_blendshapes[fa])
    vf, va = torch.from_numpy(d.view_found[fa]), torch.from_numpy(app[fa])
    f0 = d.found & rows
    E = info["embedding_dim"]
    teacher_classes = info["classes"]
    # the CNN's scores for the evaluated classes (its own 7, restricted for the 3-class task)
    cols = [teacher_classes.index(c) for c in classes]

    def cnn_views():
        p = torch.softmax(va[..., E:][..., cols], -1)
        return mean_over_found(p, vf).numpy()

    def frame_views():
        n, v = vf.shape
        p = torch.from_numpy(stream_probs(frame, vlm.flatten(0, 1), vbs.flatten(0, 1), 1,
                                          appearance=va.flatten(0, 1))).view(n, v, -1)
        return mean_over_found(p, vf).numpy()

    runs = [
        ("hybrid", fa, lambda: stream_probs(hybrid, vlm, vbs, hybrid.cfg.window, view_found=vf, appearance=va)),
        ("landmark_only", fa, lambda: stream_probs(landmark, vlm, vbs, landmark.cfg.window, view_found=vf)),
        ("cnn_alone", fa, cnn_views),
        ("per_frame_hybrid_views_mean", fa, frame_views),
        ("per_frame_hybrid_stream_mean16", fa, lambda: per_frame_stream_mean(frame, vlm, vbs, hybrid.cfg.window,
                                                                            view_found=vf, appearance=va)),
        ("cnn_alone_original_crop", f0, lambda: torch.softmax(torch.from_numpy(app[f0, 0, E:][:, cols]), -1).numpy()),
        ("per_frame_hybrid_original", f0, lambda: stream_probs(
            frame, torch.from_numpy(d.norm_landmarks[f0]), torch.from_numpy(d.blendshapes[f0]), 1,
            appearance=torch.from_numpy(app[f0, 0]))),
    ]
    if precision_tag:  # another precision's vectors: the models that read them
        runs = [r for r in runs if r[0] in ("hybrid", "cnn_alone")]
    if validation:  # the landmark-only models hold out other images: most of these they trained on
        runs = [r for r in runs if r[0] != "landmark_only"]
    probs = {name: p() for name, _, p in runs}
    found_in = {name: found for name, found, _ in runs}
    if validation:
        for w in FUSION_WEIGHTS:  # scores whose argmax is the fused class
            probs[f"fusion_hybrid_{w}"] = w * np.log(probs["hybrid"] + 1e-8) + (1 - w) * np.log(probs["cnn_alone"] + 1e-8)
            found_in[f"fusion_hybrid_{w}"] = fa
    res = {"precision": info.get("precision", "float"), "split": split, "n_scored": int(rows.sum())}
    for name, p in probs.items():
        pred = np.full(len(d.labels), -1)  # no face -> wrong
        pred[found_in[name]] = p.argmax(1)
        rep = classification_report(d.labels[rows], pred[rows], classes)
        res[name] = rep
        if name in ("hybrid", "cnn_alone") and not precision_tag and plots is not None:
            plot_confusion(rep["confusion"], classes, plots / f"confusion_appearance_{name}_{tag}.png",
                           f"{name} on FER2013 test ({len(classes)} classes, n={rep['n']}, no face = wrong): "
                           f"acc {rep['accuracy']:.3f}, macro-F1 {rep['macro_f1']:.3f}")
    if not validation:
        res["n_test"] = int(len(d.labels))
    return res


def validation_summary(argv, models: Path, features: Path, out: Path) -> int:
    r7, r3 = (evaluate(models, features, t, None, validation=True) for t in ("fer7", "fer3"))
    names = [n for n in r7 if isinstance(r7[n], dict)]
    table = {n: {"acc7": round(r7[n]["accuracy"], 4), "macro_f1_7": round(r7[n]["macro_f1"], 4),
                 "acc3": round(r3[n]["accuracy"], 4)} for n in names}
    write_result(out, {"split": "validation: the teacher's held-out 10% of the training split, faces found in the clean "
                                "rendering (train_lstm's validation of the hybrid models)",
                       "faces7": r7["n_scored"], "faces3": r3["n_scored"], "models": table,
                       "command": command_line("python -m training.eval_appearance", argv)})
    return 0


def cnn_costs(features: Path, root: Path, threads=(2, 1), n: int = 300) -> list[dict]:
    """ms per face of the appearance model as the node runs it (crop + network, batch 1; int8
    where it runs) on real test renderings, for each CPU thread count in `threads` (2: the
    face-mesh node's appearance_threads), and of the float network in the same run (the ratio is
    what the noisy machine cannot blur)."""
    from facephi_ros.appearance.model import AppearanceModel
    from facephi_ros.data.image_folder import load_for_landmarker
    from training.build_appearance import renderings_landmarks

    paths, found, lm, _ = renderings_landmarks(features, "test")
    rows = np.nonzero(found[:, 0])[0][:: max(1, found.shape[0] // n)][:n]
    frames = [(load_for_landmarker(str(root / str(paths[i]))), lm[i, 0]) for i in rows]
    fast, flt = AppearanceModel(), AppearanceModel(precision="float")
    results = []
    for t in threads:
        torch.set_num_threads(t)
        out = {}
        for name, m in (("node", fast), ("float", flt)):
            out[name] = round(median_ms(lambda k: m(frames[k][0], [frames[k][1]]), len(frames)), 2)
        results.append({"ms_per_face": out["node"], "precision": fast.precision, "ms_per_face_float": out["float"],
                        "ratio_to_float": round(out["node"] / out["float"], 3), "threads": t, "faces": len(frames)})
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"))
    ap.add_argument("--out", type=Path, default=None,
                    help="default docs/results/appearance.json (--validation: appearance_validation.json)")
    ap.add_argument("--cost-only", action="store_true", help="only re-measure the CNN's cost (updates --out)")
    ap.add_argument("--validation", action="store_true",
                    help="score on the hybrid models' validation faces (default --out: docs/results/appearance_validation.json)")
    a = ap.parse_args(argv)
    import json

    if a.validation:
        torch.set_num_threads(2)
        return validation_summary(argv, a.models, a.features, a.out or Path("docs/results/appearance_validation.json"))
    a.out = a.out or Path("docs/results/appearance.json")
    if a.cost_only:
        res = json.loads(a.out.read_text())
        costs = cnn_costs(a.features, a.root)
        res.update({"cnn_ms_per_face": costs[0]["ms_per_face"], "cnn_cost": costs[0], "cnn_cost_one_thread": costs[1]})
        write_result(a.out, res, show={k: v for k, v in res.items() if k != "details"})
        return 0
    torch.set_num_threads(2)
    r7 = evaluate(a.models, a.features, "fer7", a.out.parent)
    r3 = evaluate(a.models, a.features, "fer3", a.out.parent)
    cost, cost1 = cnn_costs(a.features, a.root)
    floats = {}
    if (a.features / "test_appearance_float.npz").exists():
        f7, f3 = (evaluate(a.models, a.features, t, a.out.parent, "_float") for t in ("fer7", "fer3"))
        floats = {"float_network": {"acc7": round(f7["hybrid"]["accuracy"], 4), "macro_f1_7": round(f7["hybrid"]["macro_f1"], 4),
                                    "acc3": round(f3["hybrid"]["accuracy"], 4),
                                    "cnn_alone_acc7": round(f7["cnn_alone"]["accuracy"], 4),
                                    "cnn_alone_acc3": round(f3["cnn_alone"]["accuracy"], 4)}}
    out = {
        "acc7": round(r7["hybrid"]["accuracy"], 4), "macro_f1_7": round(r7["hybrid"]["macro_f1"], 4),
        "acc3": round(r3["hybrid"]["accuracy"], 4), "macro_f1_3": round(r3["hybrid"]["macro_f1"], 4),
        "cnn_alone_acc7": round(r7["cnn_alone"]["accuracy"], 4), "cnn_alone_macro_f1_7": round(r7["cnn_alone"]["macro_f1"], 4),
        "cnn_alone_acc3": round(r3["cnn_alone"]["accuracy"], 4),
        "cnn_alone_original_crop_acc7": round(r7["cnn_alone_original_crop"]["accuracy"], 4),
        "landmark_only_acc7": round(r7["landmark_only"]["accuracy"], 4),
        "landmark_only_acc3": round(r3["landmark_only"]["accuracy"], 4),
        "per_frame_hybrid_views_mean_acc7": round(r7["per_frame_hybrid_views_mean"]["accuracy"], 4),
        "per_frame_hybrid_original_acc7": round(r7["per_frame_hybrid_original"]["accuracy"], 4),
        "fer_peer_acc7": FER_PEER_ACC7, "precision": r7["precision"], **floats,
        "cnn_ms_per_face": cost["ms_per_face"], "cnn_cost": cost, "cnn_cost_one_thread": cost1,
        "n_test7": r7["n_test"], "n_test3": r3["n_test"],
        "protocol": "FER2013 test, every image, no face = wrong; 16-frame streams over the six renderings "
                    "(eval_lstm's), each frame with its rendering's aligned-crop appearance vector",
        "command": command_line("python -m training.eval_appearance", argv),
        "details": {"fer7": r7, "fer3": r3},
    }
    # keep the robot-side figures benchmarks/appearance_bag.py adds to the same file
    kept = {k: v for k, v in (json.loads(a.out.read_text()) if a.out.exists() else {}).items()
            if k in ("processed_ratio", "latency_p50_ms", "latency_p50_ratio_to_off", "bag") or k.startswith("bag_runs")}
    out = {**out, **kept}
    write_result(a.out, out, show={k: v for k, v in out.items() if k != "details"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
