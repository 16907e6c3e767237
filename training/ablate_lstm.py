"""Where do the landmark models lose accuracy? Step 0: the plain MLP of issue 18, inside the
project's code, on the project's own features (training/build_dataset.py, one rendering).

    python -m training.ablate_lstm [--features runs/features/fer2013] [--test]

The plain MLP: the pose-free normalised landmarks (478 x 3) and the 52 blendshapes of each found
face, z-scored per feature with training statistics; Linear 512, GELU, dropout 0.4, Linear 256,
GELU, dropout 0.4, Linear 7; AdamW (weight decay 0.01), one-cycle schedule peaking at 2e-3, 60
epochs, batch 256; cross-entropy with class weights (1/frequency)^0.5 and label smoothing 0.1; no
augmentation, no early stopping.

1. validation: trained on 90% of the training split (stratified, seeded), scored on the other
   10% (end-to-end: an image without a face counts as wrong);
2. with --test: trained on the whole training split and scored once on the test split, the
   figure to reproduce (58.7% end-to-end, issue 18).
Writes docs/results/lstm_ablation.json. Later steps of the walk to the shipped recipe are not
written yet.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent


def inputs(d) -> np.ndarray:
    return np.concatenate([d.norm_landmarks.reshape(len(d.labels), -1), d.blendshapes], 1).astype(np.float32)


def plain_mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 512), nn.GELU(), nn.Dropout(0.4), nn.Linear(512, 256), nn.GELU(),
                         nn.Dropout(0.4), nn.Linear(256, n_out))


def train_plain(x: np.ndarray, y: np.ndarray, n_classes: int, epochs: int = 60, seed: int = 0, device: str = "cpu"):
    """(model, mean, std) trained with the plain recipe on found faces x (N, F), labels y."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).to(device)
    yt = torch.from_numpy(y).long().to(device)
    freq = np.bincount(y, minlength=n_classes).astype(np.float64)
    weight = torch.tensor((1.0 / np.maximum(freq, 1)) ** 0.5, dtype=torch.float32)
    weight = (weight / weight.mean()).to(device)
    model = plain_mlp(x.shape[1], n_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    steps = (len(y) + 255) // 256
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * steps)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="plain MLP", unit="epoch"):
        model.train()
        for idx in torch.randperm(len(yt), generator=gen).split(256):
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
            sched.step()
    return model.eval(), mean, std


def score(model, mean, std, x: np.ndarray, y: np.ndarray, found: np.ndarray, classes: list[str]) -> dict:
    """Accuracy of found faces and end-to-end (no face = wrong), macro-F1 end-to-end."""
    from facephi_ros.evaluation.metrics import classification_report

    pred = np.full(len(y), -1)
    with torch.no_grad():
        pred[found] = model(torch.from_numpy((x[found] - mean) / std)).argmax(1).numpy()
    rep = classification_report(y, pred, classes)
    return {"acc7_found": round(float((pred[found] == y[found]).mean()), 4), "acc7": round(rep["accuracy"], 4),
            "macro_f1_7": round(rep["macro_f1"], 4), "images": int(len(y)), "found": round(float(found.mean()), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the figures are their mean)")
    ap.add_argument("--test", action="store_true", help="also train on the whole training split and score the test split once")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "lstm_ablation.json")
    a = ap.parse_args(argv)
    from facephi_ros.data.feature_files import load_split
    from facephi_ros.evaluation.metrics import command_line, write_result
    from training.train_pixel_teacher import stratified_split

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tr = load_split(a.features, "train")
    x, y, found = inputs(tr), tr.labels.astype(int), tr.found
    n_classes = len(tr.classes)
    val = np.zeros(len(y), bool)
    val[stratified_split(y, 0.1, seed=0)[1]] = True
    t0 = time.time()
    fit = ~val & found
    model, mean, std = train_plain(x[fit], y[fit], n_classes, a.epochs, device=device)
    res = {"classes": tr.classes, "features": str(a.features.relative_to(REPO)) if a.features.is_relative_to(REPO) else str(a.features),
           "feature_provenance": tr.provenance,
           "steps": [{"step": "plain MLP (issue 18's recipe)", "val": score(model.cpu(), mean, std, x[val], y[val], found[val], tr.classes),
                      "train_minutes": round((time.time() - t0) / 60, 2)}]}
    print("validation:", res["steps"][0]["val"])
    if a.test:
        te = load_split(a.features, "test", tr.classes)
        runs = []
        for seed in a.seeds:
            model, mean, std = train_plain(x[found], y[found], n_classes, a.epochs, seed=seed, device=device)
            runs.append(score(model.cpu(), mean, std, inputs(te), te.labels.astype(int), te.found, tr.classes))
        t = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
        res["plain_mlp_test"] = {**t, "seeds": a.seeds, "per_seed_acc7": [r["acc7"] for r in runs]}
        res["plain_mlp_acc7_single_view"] = t["acc7"]
        res["plain_mlp_reference"] = {"acc7": 0.587, "acc7_found": 0.610, "macro_f1_7": 0.565, "source": "issue 18 (measured 2026-12-02)"}
        print("test:", t)
    res["command"] = command_line("python -m training.ablate_lstm", argv)
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
