"""Probe (not a shipped model): does the pixel teacher, fine-tuned on the aligned crops of the
renderings, recover what those crops cost it? Validation only: the teacher's own held-out 10% of
the training split (train_pixel_teacher's stratified split, seed 0), crops of the original
rendering; fine-tuning on two random renderings of every other training image, 3 epochs, AdamW
(peak 3e-4, one-cycle), random flips, label smoothing 0.1. Prints the validation accuracy before
and after each epoch; writes nothing (about 17 min on 2 cores).

    python -m training.probe_crop_finetune
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facephi_ros.appearance.model import AppearanceModel
from facephi_ros.data.image_folder import load_for_landmarker
from facephi_ros.models.pixel_teacher import standardise
from training.build_appearance import renderings_landmarks
from training.train_pixel_teacher import stratified_split


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"))
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    paths, found, lm, views = renderings_landmarks(a.features, "train")
    y = np.load(a.features / "train.npz")["labels"].astype(int)
    tr, val = stratified_split(y, 0.1, 0)
    model = AppearanceModel(optimize=False)
    rng = np.random.default_rng(0)

    def crops(idx, per):  # per: renderings per image (0: the original only)
        xs, ys = [], []
        for i in idx:
            ks = np.nonzero(found[i])[0]
            for k in (rng.choice(ks, min(per, len(ks)), replace=False) if per else ks[:1]):
                img = load_for_landmarker(str(a.root / str(paths[i])), view=views[k])
                xs.append(model.crops(img, [lm[i, k]])[0])
                ys.append(y[i])
        return np.stack(xs), np.array(ys)

    t0 = time.time()
    xv, yv = crops(val[found[val, 0]], 0)
    xt, yt = crops(tr, 2)
    net = model.teacher

    def accuracy():
        net.eval()
        with torch.no_grad():
            p = torch.cat([net(standardise(torch.from_numpy(xv[i:i + 512])[:, None]))[1] for i in range(0, len(xv), 512)])
        return round(float((p.argmax(1).numpy() == yv).mean()), 4)

    print(f"{len(xt)} training crops, {len(xv)} validation crops; validation accuracy before: {accuracy()}", flush=True)
    steps = a.epochs * (len(xt) // 128)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(0)
    for e in range(a.epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen).numpy()
        for s in range(len(xt) // 128):
            b = perm[s * 128:(s + 1) * 128]
            x = standardise(torch.from_numpy(xt[b])[:, None])
            flip = torch.rand(len(b), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(net(x)[1], torch.from_numpy(yt[b]), label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {e + 1}: validation accuracy {accuracy()} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
