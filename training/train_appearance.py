"""Train the appearance network: the pixel teacher fine-tuned on the eye-aligned face crops that the
face-mesh node cuts in appearance mode.

    python -m training.train_appearance        # -> models/appearance/appearance.safetensors
                                               #    docs/results/appearance_training.json

Why: the teacher learnt on FER2013's own framing. On the aligned crops of the landmarker's
renderings it is right less often than on the raw images (the first teacher: 63.2% against 66.8%
on the test split; the 91-epoch one: 65.5% against 69.8% on its validation hold-out;
docs/appearance.md), so the appearance mode loses points before the hybrid model sees a vector.

1. Crops (cached, runs/features/fer2013/<split>_crops.npz): for every image of the feature file
   and each of its six renderings, the crop cut from that rendering with that rendering's own
   landmarks, exactly as build_appearance and the node cut it (training.build_appearance.cut_crops).
2. Fine-tuning: the committed teacher's weights and architecture are the start. It trains on the
   crops of the teacher's own training 90% of the training split (train_pixel_teacher's
   stratified split, seed 0). Each epoch takes one random rendering of every image, with
   random mirroring and a small random shift / zoom / rotation, like the landmarks' own noise.
   AdamW with a one-cycle schedule and label smoothing.
3. Validation: after each epoch, on every found rendering's crop of the teacher's held-out 10%.
   The best epoch is shipped. A checkpoint is written after every epoch, and a restarted run
   resumes from it. The test split is not read here: training.eval_appearance reads it once.

The shipped file has the teacher's format (facephi_ros.models.pixel_teacher.load_teacher reads
it); the teacher's own file is not changed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facephi_ros.evaluation.metrics import command_line, write_result
from facephi_ros.models.pixel_teacher import load_teacher, save_teacher, standardise
from training.build_appearance import cut_crops
from training.train_pixel_teacher import augment, save_checkpoint, stratified_split

PROG = "python -m training.train_appearance"
REPO = Path(__file__).resolve().parent.parent


def split_crops(features: Path, root: Path) -> tuple:
    """The training split's crops (N, V, 48, 48) uint8, found (N, V), labels (N,), the training
    image indices of the teacher's 90% with a face in some rendering, and (crops, labels,
    rendering index) of every found rendering of the teacher's held-out 10%."""
    crops, found, _ = cut_crops(features, "train", root)
    y = np.load(features / "train.npz")["labels"].astype(np.int64)
    tr, val = stratified_split(y, 0.1, 0)
    vi, vk = np.nonzero(found[val])
    return crops, found, y, tr[found[tr].any(1)], (crops[val][vi, vk], y[val][vi], vk)


@torch.no_grad()
def accuracy(net, crops: np.ndarray, labels: np.ndarray, batch: int = 1024) -> float:
    net.eval()
    pred = [net(standardise(torch.from_numpy(crops[i:i + batch])[:, None]))[1].argmax(1)
            for i in range(0, len(crops), batch)]
    return round(float((torch.cat(pred).numpy() == labels).mean()), 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"))
    ap.add_argument("--teacher", type=Path, default=None, help="starting weights (default: the committed teacher)")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "appearance", help="checkpoints")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "appearance" / "appearance.safetensors")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "results" / "appearance_training.json")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4, help="one-cycle peak rate")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--shift", type=float, default=1.5, help="jitter: largest shift in pixels")
    ap.add_argument("--scale", type=float, default=0.04, help="jitter: largest relative zoom")
    ap.add_argument("--rotate", type=float, default=4.0, help="jitter: largest rotation in degrees")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    t_start = time.time()
    crops, found, y, tr, (val_crops, val_y, vk) = split_crops(a.features, a.root)
    orig = vk == 0
    print(f"{len(tr)} training images, {len(val_crops)} validation crops ({int(orig.sum())} of the original rendering)",
          flush=True)

    net = load_teacher(a.teacher).to(device)
    gen = torch.Generator().manual_seed(0)
    steps_per_epoch = len(tr) // a.batch_size
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.epochs * steps_per_epoch, pct_start=0.2)
    a.runs.mkdir(parents=True, exist_ok=True)
    ckpt = a.runs / "checkpoint.pt"
    history, best, start = [], None, 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        history, best, start = state["history"], state["best"], state["epoch"]
        print(f"resumed after epoch {start}", flush=True)
    else:
        before = {"epoch": 0, "val_acc7": accuracy(net, val_crops, val_y),
                  "val_acc7_original_rendering": accuracy(net, val_crops[orig], val_y[orig])}
        history.append(before)
        print(f"before fine-tuning: {before}", flush=True)
    rng = np.random.default_rng(1000 + start)
    for epoch in range(start, a.epochs):
        net.train()
        # one random found rendering of every training image
        k = np.array([rng.choice(np.nonzero(found[i])[0]) for i in tr])
        order = torch.randperm(len(tr), generator=gen).numpy()
        for s in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{a.epochs}", unit="batch", mininterval=10):
            b = order[s * a.batch_size:(s + 1) * a.batch_size]
            x = torch.from_numpy(crops[tr[b], k[b]])[:, None].float()
            x = standardise(augment(x, gen, a.shift, a.scale, a.rotate, 0.0)).to(device)
            loss = F.cross_entropy(net(x)[1], torch.from_numpy(y[tr[b]]).to(device), label_smoothing=a.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        row = {"epoch": epoch + 1, "val_acc7": accuracy(net, val_crops, val_y),
               "val_acc7_original_rendering": accuracy(net, val_crops[orig], val_y[orig]),
               "minutes": round((time.time() - t_start) / 60, 1)}
        history.append(row)
        print(row, flush=True)
        if best is None or row["val_acc7"] > best["val_acc7"]:
            best = row
            save_teacher(net, a.runs / "best.safetensors",
                         extra={"fine_tuned_on": "eye-aligned 48x48 crops of the six renderings", "epoch": epoch + 1})
        save_checkpoint(ckpt, {"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                               "gen": gen.get_state(), "history": history, "best": best, "epoch": epoch + 1})

    final = load_teacher(a.runs / "best.safetensors")
    save_teacher(final, a.out, extra={**final.meta["extra"], "val_acc7": best["val_acc7"],
                                      "command": command_line(PROG, argv)})
    result = {
        "what": "the pixel teacher fine-tuned on the eye-aligned crops of the six renderings (appearance mode's network)",
        "start": "models/pixel_teacher/pixel_teacher.safetensors",
        "validation": "every found rendering's crop of the teacher's held-out 10% of the training split",
        "best_epoch": best["epoch"], "val_acc7": best["val_acc7"],
        "val_acc7_before": history[0]["val_acc7"] if history[0]["epoch"] == 0 else None,
        "history": history, "train_minutes": round((time.time() - t_start) / 60, 1), "device": str(device),
        "threads": a.threads, "settings": {k: getattr(a, k) for k in ("epochs", "batch_size", "lr", "weight_decay",
                                                                       "label_smoothing", "shift", "scale", "rotate")},
        "weights": str(a.out.relative_to(REPO)) if a.out.is_relative_to(REPO) else str(a.out),
        "command": command_line(PROG, argv),
    }
    write_result(a.results, result)
    print(f"{a.out}: epoch {best['epoch']}, validation {best['val_acc7']} "
          f"(before fine-tuning {result['val_acc7_before']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
