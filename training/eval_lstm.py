"""Evaluate the LSTM emotion models and their per-frame baselines on the FER2013 test split.

Every test image counts; an image in which MediaPipe found no face counts as wrong. The LSTM
sees each test face as a camera would show a still face: 16 frames, each one of the image's six
renderings (original, mirror, zoom, roll; build_dataset --views) in which a face was found, with
mild pose jitter and landmark noise (seeded), and is scored on its last output. The per-frame
baseline is scored on the single clean original frame and on the mean of its outputs over the
views. --single-view repeats the original-only protocol (the LSTM's 16 frames are jittered
copies of the one original frame) and is also reported under *_single_view.

    python -m training.eval_lstm            # -> docs/results/lstm_fer2013.json + confusion plots
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.image_folder import EXTRA_VIEWS
from facephi_ros.data.sequences import make_sequences, mean_over_found
from facephi_ros.evaluation.metrics import (
    classification_report,
    command_line,
    plot_confusion,
    write_result,
)
from facephi_ros.models.lstm import load_model
from training.train_lstm import STREAM_AUGMENT, feature_kwargs, stream_probs


@torch.no_grad()
def per_frame_stream_mean(model, lm, bs, window, seed=123, batch=512, view_found=None, appearance=None):
    """The per-frame model's outputs averaged over the same camera-like stream the LSTM is scored on."""
    fk = feature_kwargs(model.cfg.feature_config)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(lm), batch):
        idx = torch.arange(i, min(i + batch, len(lm)))
        x, _ = make_sequences(lm, bs, torch.zeros(len(lm), dtype=torch.long), idx, idx, window, STREAM_AUGMENT, gen,
                              view_found=view_found, appearance=appearance, **fk)
        out.append(torch.softmax(model(x), -1).mean(1))
    return torch.cat(out).numpy()


def per_frame_views_mean(model, lm, bs, view_found) -> np.ndarray:
    """Mean of the per-frame model's outputs over the views in which a face was found."""
    n, v = view_found.shape
    p = torch.from_numpy(stream_probs(model, lm.flatten(0, 1), bs.flatten(0, 1), 1)).view(n, v, -1)
    return mean_over_found(p, view_found).numpy()


def evaluate(models_dir: Path, features_dir: Path, tag: str, plots: Path, views: bool, lstm_dir: str = "") -> dict:
    lstm, meta = load_model(Path(lstm_dir.format(tag=tag)) if lstm_dir else models_dir / f"lstm_{tag}")
    frame, _ = load_model(models_dir / f"frame_{tag}")
    classes = list(lstm.cfg.classes)
    d = load_split(features_dir, "test", classes, views=views)
    f = d.found
    lm, bs = torch.from_numpy(d.norm_landmarks[f]), torch.from_numpy(d.blendshapes[f])

    def full(pred_found, found):
        pred = np.full(len(d.labels), -1)  # no face -> wrong
        pred[found] = pred_found
        return pred

    runs = [("lstm_single_view" if views else "lstm", f, lambda: stream_probs(lstm, lm, bs, lstm.cfg.window)),
            ("per_frame", f, lambda: stream_probs(frame, lm, bs, 1)),
            ("per_frame_mean16", f, lambda: per_frame_stream_mean(frame, lm, bs, lstm.cfg.window))]
    if views:
        fa = d.found_any
        vlm, vbs = torch.from_numpy(d.view_landmarks[fa]), torch.from_numpy(d.view_blendshapes[fa])
        vf = torch.from_numpy(d.view_found[fa])
        runs = [("lstm", fa, lambda: stream_probs(lstm, vlm, vbs, lstm.cfg.window, view_found=vf)),
                ("per_frame_views_mean", fa, lambda: per_frame_views_mean(frame, vlm, vbs, vf))] + runs
    res = {}
    for name, found, probs in runs:
        rep = classification_report(d.labels, full(probs().argmax(1), found), classes)
        res[name] = rep
        if lstm_dir and not name.startswith("lstm"):
            continue  # another LSTM candidate: the per-frame models' plots are the shipped run's
        plot_confusion(rep["confusion"], classes, plots / f"confusion_{name}_{tag}.png",
                       f"{name} on FER2013 test ({len(classes)} classes, n={rep['n']}, no face = wrong): "
                       f"acc {rep['accuracy']:.3f}, macro-F1 {rep['macro_f1']:.3f}")
    res["detection_rate"] = float(d.found_any.mean())
    res["detection_rate_single_view"] = float(f.mean())
    res["n_test"] = int(len(d.labels))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--out", type=Path, default=Path("docs/results/lstm_fer2013.json"))
    ap.add_argument("--lstm", default="",
                    help="the LSTM folders instead of <models>/lstm_<tag>, with {tag} for fer7 / fer3 "
                         "(for example another candidate: runs/ensemble/ensemble_{tag}); plots go beside --out")
    ap.add_argument("--single-view", action="store_true",
                    help="score only the original rendering of each image (no test_views.npz needed)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    plots = a.out.parent
    views = not a.single_view
    r7 = evaluate(a.models, a.features, "fer7", plots, views, a.lstm)
    r3 = evaluate(a.models, a.features, "fer3", plots, views, a.lstm)
    extra = {}
    if views:
        extra = {"acc7_single_view": round(r7["lstm_single_view"]["accuracy"], 4),
                 "macro_f1_7_single_view": round(r7["lstm_single_view"]["macro_f1"], 4),
                 "acc3_single_view": round(r3["lstm_single_view"]["accuracy"], 4),
                 "per_frame_views_mean_acc7": round(r7["per_frame_views_mean"]["accuracy"], 4),
                 "per_frame_views_mean_acc3": round(r3["per_frame_views_mean"]["accuracy"], 4),
                 "detection_rate_single_view": round(r7["detection_rate_single_view"], 4),
                 "views": 1 + len(EXTRA_VIEWS)}
    out = {
        "acc7": round(r7["lstm"]["accuracy"], 4), "macro_f1_7": round(r7["lstm"]["macro_f1"], 4),
        "acc3": round(r3["lstm"]["accuracy"], 4), "macro_f1_3": round(r3["lstm"]["macro_f1"], 4),
        "per_frame_acc7": round(r7["per_frame"]["accuracy"], 4), "per_frame_macro_f1_7": round(r7["per_frame"]["macro_f1"], 4),
        "per_frame_acc3": round(r3["per_frame"]["accuracy"], 4),
        "per_frame_mean16_acc7": round(r7["per_frame_mean16"]["accuracy"], 4),
        "detection_rate": round(r7["detection_rate"], 4), "n_test7": r7["n_test"], "n_test3": r3["n_test"], **extra,
        "command": command_line("python -m training.eval_lstm", argv),
        "details": {"fer7": r7, "fer3": r3},
    }
    write_result(a.out, out, show={k: v for k, v in out.items() if k != "details"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
