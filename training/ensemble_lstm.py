"""Join separately trained emotion models into one ensemble model folder, and validate it.

    python -m training.ensemble_lstm --config training/configs/lstm_fer7.yaml \\
        --members models/lstm_fer7 runs/ensemble/lstm_fer7_s1 --out runs/ensemble/ensemble_fer7

The members are models of one configuration trained with different seeds
(`python -m training.train_lstm ... --seed N`, each from its own per-frame model), so their
errors differ; the ensemble averages their class probabilities (facephi_ros.models.lstm.EmotionEnsemble).
The emotion node runs such a folder given as its model_dir. The shipped models are single: an
ensemble of two costs nearly twice as much for a small gain (docs/lstm.md).
Weights are stored as float16 to keep the file under 10 MB. Before writing, every member and the
ensemble are scored on train_lstm's validation stream (the config's held-out share of the training
split, the same noisy 16-frame stream train_lstm reports; the test split is never read), and the
figures go to <out>/metrics.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.image_folder import EXTRA_VIEWS
from facephi_ros.evaluation.metrics import classification_report, command_line, write_result
from facephi_ros.models.lstm import EmotionEnsemble, ModelFileError, load_model, save_model
from training.train_lstm import stream_probs, validation_split


HOLDOUT_KEYS = ("seed", "val_fraction", "val_split")  # what decides train_lstm's validation faces


def validation_stream(cfg: dict) -> tuple:
    """train_lstm's validation faces of this config: (landmarks, blendshapes, found) of the views, labels."""
    data = load_split(cfg["features_dir"], "train", cfg["classes"], views=True)
    _, val = validation_split(cfg, data)
    n = 1 + len(EXTRA_VIEWS)
    return (torch.from_numpy(data.view_landmarks[val][:, :n]), torch.from_numpy(data.view_blendshapes[val][:, :n]),
            torch.from_numpy(data.view_found[val][:, :n]), data.labels[val])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="the members' training config (for the validation faces)")
    ap.add_argument("--members", type=Path, nargs="+", required=True, help="trained model folders, two or more")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(a.config.read_text())
    try:
        loaded = [load_model(m, expect_classes=cfg["classes"]) for m in a.members]
    except ModelFileError as e:
        raise SystemExit(str(e)) from None
    members, metas = [m for m, _ in loaded], [meta for _, meta in loaded]
    if any(isinstance(m, EmotionEnsemble) for m in members):
        raise SystemExit("members must be single models, not ensembles")
    if any(m.cfg.appearance_dim for m in members) or not cfg.get("views"):
        raise SystemExit("ensemble_lstm joins landmark models trained on the views (views: true); "
                         "hybrid models are not supported")
    hold = {k: cfg["train"].get(k) for k in HOLDOUT_KEYS}
    for m, meta in zip(a.members, metas):  # validated on the config's hold-out: the members must not have trained on it
        theirs = meta.get("training_config", {}).get("train", {})
        if {k: theirs.get(k) for k in HOLDOUT_KEYS} != hold:
            raise SystemExit(f"member {m} was trained with another validation hold-out "
                             f"({ {k: theirs.get(k) for k in HOLDOUT_KEYS} } vs the config's {hold})")
    try:
        ensemble = EmotionEnsemble(members).eval()
    except ValueError as e:
        raise SystemExit(f"cannot join {[str(m) for m in a.members]}: {e}") from None
    lm, bs, vf, y = validation_stream(cfg)

    def probs(model):  # train_lstm's validation: the noisy stream, or the clean frame for per-frame models
        if model.cfg.window == 1:
            return stream_probs(model, lm[:, 0], bs[:, 0], 1)
        return stream_probs(model, lm, bs, model.cfg.window, view_found=vf)

    val = {}
    for name, model in [*((str(p), m) for p, m in zip(a.members, members)), ("ensemble", ensemble)]:
        rep = classification_report(y, probs(model).argmax(1), cfg["classes"])
        val[name] = {"accuracy": round(rep["accuracy"], 4), "macro_f1": round(rep["macro_f1"], 4)}
        print(f"validation {name}: acc {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}", flush=True)
    save_model(ensemble, a.out, {"trained_with": command_line("python -m training.ensemble_lstm", argv),
                                 "members_from": [str(m) for m in a.members],
                                 "members_trained_with": [meta.get("trained_with", "") for meta in metas],
                                 "training_config": cfg}, half=True)
    back, _ = load_model(a.out)  # the stored (float16) weights: the figure the node gets
    rep = classification_report(y, probs(back).argmax(1), cfg["classes"])
    val["ensemble_as_stored"] = {"accuracy": round(rep["accuracy"], 4), "macro_f1": round(rep["macro_f1"], 4)}
    print(f"validation, as stored (float16): acc {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}")
    write_result(a.out / "metrics.json", {"name": cfg["name"], "members": len(members), "val_faces": int(len(y)),
                                          "val": val, "protocol": "train_lstm's validation stream (16 noisy frames of "
                                                                  "the held-out faces' renderings)"})
    size = (a.out / "weights.safetensors").stat().st_size / 1e6
    print(f"-> {a.out} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
