"""Train the pixel teacher (facephi_ros.models.pixel_teacher) on the FER2013 training pixels.

    python -m training.train_pixel_teacher                     # -> models/pixel_teacher/, docs/results/pixel_teacher.json
    python -m training.train_pixel_teacher --finish            # stop now: evaluate the best checkpoint so far

The training split is read once into memory (cached as runs/pixel_teacher/fer2013_train.npz); a
stratified, seeded 10% of it is held out for validation, which picks the epoch whose weights are
shipped and whether test-time mirroring is used. Augmentation: random horizontal flips, small
random affine crops (shift, scale, rotation) and random erasing. AdamW, one-cycle schedule, label
smoothing. A checkpoint is written after every epoch and a restarted run resumes from it. After
training the test split is read once for the final figures (accuracy with and without mirroring,
macro-F1, per-face CPU cost at batch 1 on one thread) and a confusion plot.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from facephi_ros.data.image_folder import index_split
from facephi_ros.evaluation.metrics import classification_report, command_line, median_ms, plot_confusion, write_result
from facephi_ros.models.pixel_teacher import (
    CLASSES,
    INPUT_SIZE,
    PixelTeacher,
    TeacherConfig,
    count_parameters,
    load_teacher,
    save_teacher,
    standardise,
)

PROG = "python -m training.train_pixel_teacher"
# what a run record (a finished run brought back from another machine) leaves out of last.pt: --finish still evaluates it
TRAINING_STATE = ("model", "opt", "sched", "gen", "torch_rng")


def load_images(root: Path, split: str, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 48, 48) uint8, labels (N,) int64) of one split, in index_split's order; the
    training split is cached as an .npz (its file list and classes are checked on reuse)."""
    import cv2

    if cache is not None and cache.is_file() and not (root / split).is_dir():
        # a machine without the image folders (a rented GPU): the cache alone, as written from them
        d = np.load(cache)
        if list(d["classes"]) != CLASSES:
            raise SystemExit(f"{cache} has classes {list(d['classes'])}, the teacher expects {CLASSES}")
        print(f"{root}/{split} is not here: using the cache {cache} ({len(d['labels'])} images)")
        return d["images"], d["labels"].astype(np.int64)
    idx = index_split(root, split)
    if list(idx.classes) != CLASSES:
        raise SystemExit(f"{root}/{split} has classes {idx.classes}, the teacher expects {CLASSES}")
    if cache is not None and cache.is_file():
        d = np.load(cache)
        if list(d["classes"]) == CLASSES and len(d["labels"]) == len(idx.paths) and (d["labels"] == idx.labels).all():
            return d["images"], d["labels"].astype(np.int64)
        print(f"cache {cache} does not match {root}/{split}: reading the images again")
    images = np.empty((len(idx.paths), INPUT_SIZE, INPUT_SIZE), np.uint8)
    for i, p in enumerate(tqdm(idx.paths, desc=f"reading {split}", leave=False)):
        img = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise SystemExit(f"cannot read image {p}")
        if img.shape != (INPUT_SIZE, INPUT_SIZE):
            img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        images[i] = img
    labels = idx.labels.astype(np.int64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, images=images, labels=labels, classes=np.array(CLASSES))
    return images, labels


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        rng.shuffle(idx)
        val.append(idx[:int(round(len(idx) * fraction))])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val), val


def augment(x: torch.Tensor, gen: torch.Generator, shift_px: float, scale: float, rotate_deg: float,
            erase_p: float) -> torch.Tensor:
    """A batch of raw pixels (B, 1, H, W) float -> flipped, affinely cropped, partly erased pixels."""
    b, _, h, w = x.shape
    u = lambda: torch.rand(b, generator=gen) * 2 - 1  # noqa: E731  uniform in [-1, 1), drawn on the CPU
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    s = 1.0 + scale * u()  # > 1 zooms out
    a = torch.deg2rad(rotate_deg * u())
    tx, ty = shift_px * u() * 2 / w, shift_px * u() * 2 / h
    theta = torch.stack([torch.stack([s * torch.cos(a) * flip, -s * torch.sin(a), tx], 1),
                         torch.stack([s * torch.sin(a) * flip, s * torch.cos(a), ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if erase_p > 0:  # random erasing: one rectangle (2-25% of the area) filled with noise
        hit = torch.nonzero(torch.rand(b, generator=gen) < erase_p).flatten().tolist()
        for i in hit:
            area = (0.02 + 0.23 * torch.rand(1, generator=gen).item()) * h * w
            ratio = math.exp((torch.rand(1, generator=gen).item() * 2 - 1) * math.log(3))
            eh, ew = min(h, int(round(math.sqrt(area * ratio)))), min(w, int(round(math.sqrt(area / ratio))))
            y0 = int(torch.randint(0, h - eh + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
            x[i, :, y0:y0 + eh, x0:x0 + ew] = (torch.rand(1, eh, ew, generator=gen) * 255).to(x.device)
    return x


@torch.no_grad()
def logits_of(model: PixelTeacher, images: np.ndarray, device, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, logits averaged with the mirror image's) of raw images (N, 48, 48), in one pass."""
    model.eval()
    plain, mirrored = [], []
    for i in range(0, len(images), batch):
        x = standardise(torch.from_numpy(images[i:i + batch])[:, None].float()).to(device)
        logits = model(torch.cat([x, x.flip(-1)]).contiguous(memory_format=torch.channels_last))[1].float().cpu()
        plain.append(logits[:len(x)])
        mirrored.append((logits[:len(x)] + logits[len(x):]) / 2)
    return torch.cat(plain), torch.cat(mirrored)


def val_figures(model, images, labels, device) -> dict:
    out = {}
    for key, logits in zip(("plain", "mirror"), logits_of(model, images, device)):
        rep = classification_report(labels, logits.argmax(1).numpy(), CLASSES)
        out[key] = {"acc7": round(rep["accuracy"], 4), "macro_f1_7": round(rep["macro_f1"], 4)}
    return out


def ms_per_face(model: PixelTeacher, mirror: bool, repeats: int = 300) -> dict:
    """Per-face CPU cost at batch 1 on one thread (median of `repeats` calls): from a 96x96 grey
    crop (resize + standardise + network) and the network alone on a preprocessed 48x48 tensor."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = load_teacher_copy(model)
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (96, 96), dtype=np.uint8)
    x = torch.from_numpy(rng.normal(size=(1, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32))

    def timed(fn) -> float:
        return round(median_ms(lambda _: fn(), repeats), 3)

    with torch.no_grad():
        net = timed(lambda: cpu.forward_mirrored(x) if mirror else cpu(x))
    full = timed(lambda: cpu.encode(crop, mirror=mirror))
    torch.set_num_threads(threads)
    return {"ms_per_face": full, "ms_network_only": net, "threads": 1, "batch": 1, "mirror": mirror,
            "crop": "96x96 grey uint8 -> preprocess -> network"}


def batch_loss(model: PixelTeacher, tr_x: torch.Tensor, tr_y: torch.Tensor, b: torch.Tensor, gen: torch.Generator,
               a, device, loss_fn) -> torch.Tensor:
    """The training loss of one batch (indices b): augmented on the training device, standardised."""
    x = augment(tr_x[b].to(device).float(), gen, a.shift, a.scale, a.rotate, a.erase)
    x = standardise(x).contiguous(memory_format=torch.channels_last)
    return loss_fn(model(x)[1], tr_y[b].to(device))


def epochs_within(budget_min: float, model: PixelTeacher, tr_x: torch.Tensor, tr_y: torch.Tensor, steps: int,
                  val: tuple, a, device, loss_fn) -> tuple[int, float]:
    """How many epochs fit in `budget_min` minutes: a few training steps (no update) and a validation
    pass (the second of two: the first includes the kernels' warm-up) are timed on this device. The
    weights, BatchNorm statistics and global random state are left as they were, so a budgeted run
    draws the same random numbers as `--epochs N` alone. Returns (epochs, seconds per epoch)."""
    keep = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(a.seed + 1)  # not the training stream
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        times = []
        for k in range(12):
            t = time.perf_counter()
            loss = batch_loss(model, tr_x, tr_y, torch.randint(0, len(tr_y), (a.batch_size,), generator=gen), gen, a,
                              device, loss_fn)
            loss.backward()
            model.zero_grad(set_to_none=True)
            loss.item()
            if k >= 4:
                times.append(time.perf_counter() - t)
        val_figures(model, *val, device)
        t = time.perf_counter()
        val_figures(model, *val, device)
        per_epoch = steps * float(np.median(times)) * 1.15 + (time.perf_counter() - t)
    model.load_state_dict(keep)
    return max(1, min(a.epochs, int(budget_min * 60 / per_epoch))), per_epoch


def load_teacher_copy(model: PixelTeacher) -> PixelTeacher:
    cpu = PixelTeacher(model.cfg)
    cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    return cpu.eval()


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"), help="FER2013 image folders")
    ap.add_argument("--runs", type=Path, default=Path("runs/pixel_teacher"), help="cache, checkpoints, log")
    ap.add_argument("--out", type=Path, default=Path("models/pixel_teacher"), help="folder of the shipped weights")
    ap.add_argument("--results", type=Path, default=Path("docs/results/pixel_teacher.json"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3, help="one-cycle peak rate")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--dropout", type=float, default=0.4)
    ap.add_argument("--shift", type=float, default=4.0, help="random crop: largest shift in pixels")
    ap.add_argument("--scale", type=float, default=0.1, help="random crop: largest relative zoom")
    ap.add_argument("--rotate", type=float, default=10.0, help="random crop: largest rotation in degrees")
    ap.add_argument("--erase", type=float, default=0.25, help="probability of random erasing")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    ap.add_argument("--budget-min", type=float, default=0.0,
                    help="train at most as many of --epochs as fit in this many minutes, timed on this device "
                         "before training (the schedule is set for that number)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many batches (timing runs)")
    ap.add_argument("--no-test", action="store_true", help="train only; do not read the test split")
    ap.add_argument("--finish", action="store_true", help="train no further: evaluate the best checkpoint so far")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    command = command_line(PROG, argv)
    a.runs.mkdir(parents=True, exist_ok=True)
    last_path, best_path = a.runs / "last.pt", a.runs / "best.pt"
    settings = {k: v for k, v in vars(a).items() if k not in ("root", "runs", "out", "results", "threads", "device",
                                                               "no_test", "finish", "budget_min")}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}

    t_read = time.time()
    images, labels = load_images(a.root, "train", a.runs / "fer2013_train.npz")
    tr_idx, val_idx = stratified_split(labels, a.val_fraction, a.seed)
    print(f"FER2013 train: {len(labels)} images ({time.time() - t_read:.0f} s to read) -> {len(tr_idx)} train / "
          f"{len(val_idx)} validation (stratified {a.val_fraction:.0%}, seed {a.seed}); device {device}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    tr_x = torch.from_numpy(images[tr_idx])[:, None]
    tr_y = torch.from_numpy(labels[tr_idx])
    val_x, val_y = images[val_idx], labels[val_idx]

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(a.seed)
    cfg = TeacherConfig(classes=list(CLASSES), channels=list(a.channels), dropout=a.dropout)
    model = PixelTeacher(cfg).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    steps = math.ceil(len(tr_idx) / a.batch_size)
    if a.max_steps:
        steps = min(steps, a.max_steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    ck = torch.load(last_path, map_location="cpu", weights_only=False) if last_path.is_file() else None
    if (a.budget_min or a.finish) and ck is not None:  # resuming: the epochs fixed when this run began
        a.epochs = settings["epochs"] = ck["settings"]["epochs"]
    elif a.budget_min:
        a.epochs, per_epoch = epochs_within(a.budget_min, model, tr_x, tr_y, steps, (val_x, val_y), a, device, loss_fn)
        print(f"budget {a.budget_min:g} min at about {per_epoch:.1f} s per epoch on {device}: {a.epochs} epochs "
              f"(asked for {settings['epochs']})", flush=True)
        settings["epochs"] = a.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(a.seed)
    start, history, train_seconds, best = 0, [], 0.0, None
    trained_on = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {a.threads} thread(s)"
    train_command, train_threads = command, a.threads  # the run that trained the weights (a --finish names the original one)
    if ck is not None:
        if ck["settings"] != settings:
            diff = {k: (ck["settings"].get(k), v) for k, v in settings.items() if ck["settings"].get(k) != v}
            raise SystemExit(f"{last_path} was written with other settings {diff} (checkpoint, now): "
                             f"delete {a.runs}/*.pt to start again")
        if "model" in ck:  # a record without it (a run brought back from another machine) can only be evaluated
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            gen.set_state(ck["gen"])
            torch.set_rng_state(ck["torch_rng"])
        elif ck["epoch"] < a.epochs and not a.finish:
            raise SystemExit(f"{last_path} is a record without training state, stopped after epoch {ck['epoch']} of "
                             f"{a.epochs}: it cannot resume (--finish evaluates it; delete {a.runs}/*.pt to start again)")
        start, history, train_seconds, best = ck["epoch"], ck["history"], ck["train_seconds"], ck["best"]
        trained_on = ck.get("trained_on", trained_on)
        train_command = ck.get("command", train_command)
        train_threads = ck.get("threads", train_threads)
        print(f"resuming after epoch {start} of {a.epochs} ({train_seconds / 60:.1f} min trained so far)", flush=True)
    print(f"PixelTeacher {cfg.channels}, {count_parameters(model) / 1e6:.2f}M parameters; {a.epochs} epochs of {steps} "
          f"batches of {a.batch_size}", flush=True)

    for epoch in range(start, 0 if a.finish else a.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(tr_y), generator=gen)
        total, n = 0.0, 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{a.epochs}", leave=False, mininterval=5)
        for s in bar:
            b = perm[s * a.batch_size:(s + 1) * a.batch_size]
            loss = batch_loss(model, tr_x, tr_y, b, gen, a, device, loss_fn)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
            n += len(b)
            bar.set_postfix(loss=f"{total / n:.3f}", refresh=False)
        val = val_figures(model, val_x, val_y, device)
        train_seconds += time.time() - t0
        row = {"epoch": epoch + 1, "loss": round(total / n, 4), "val": val, "minutes": round(train_seconds / 60, 2)}
        history.append(row)
        score = max(val["plain"]["acc7"], val["mirror"]["acc7"])
        improved = best is None or score > best["score"]
        if improved:
            best = {"score": score, "epoch": epoch + 1, "val": val}
            save_teacher(model, best_path.with_suffix(".safetensors"), {"epoch": epoch + 1, "val": val})
        save_checkpoint(last_path, {"settings": settings, "model": model.state_dict(), "opt": opt.state_dict(),
                                    "sched": sched.state_dict(), "gen": gen.get_state(),
                                    "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "history": history,
                                    "train_seconds": train_seconds, "best": best, "trained_on": trained_on,
                                    "command": train_command, "threads": train_threads})
        print(f"epoch {epoch + 1}: loss {total / n:.3f}  val acc {val['plain']['acc7']:.4f} (mirrored "
              f"{val['mirror']['acc7']:.4f})  macro-F1 {val['plain']['macro_f1_7']:.4f}{'  *' if improved else ''}  "
              f"({time.time() - t0:.0f} s, {train_seconds / 60:.1f} min in all)", flush=True)

    if best is None:
        raise SystemExit("no epoch trained yet: nothing to evaluate")
    done = history[-1]["epoch"] if history else 0
    # The shipped weights: the best validation epoch; mirroring if it helped on validation.
    teacher = load_teacher(best_path.with_suffix(".safetensors"))
    saved_epoch = teacher.meta.get("extra", {}).get("epoch")
    if saved_epoch != best["epoch"]:  # a run stopped between the two writes
        raise SystemExit(f"{best_path.with_suffix('.safetensors')} holds epoch {saved_epoch}, "
                         f"{last_path} says the best is epoch {best['epoch']}: rerun that epoch (delete last.pt's newer "
                         f"state) or retrain")
    mirror = best["val"]["mirror"]["acc7"] >= best["val"]["plain"]["acc7"]
    extra = {"trained_with": train_command, "epoch": best["epoch"], "epochs_trained": done, "epochs_planned": a.epochs,
             "val": best["val"], "mirror_recommended": mirror, "settings": settings}
    weights = save_teacher(teacher, a.out / "pixel_teacher.safetensors", extra)
    print(f"best validation epoch {best['epoch']} of {done}: acc {best['val']['plain']['acc7']:.4f}, mirrored "
          f"{best['val']['mirror']['acc7']:.4f} -> {weights} ({weights.stat().st_size / 1e6:.1f} MB)", flush=True)
    if a.no_test:
        return 0

    test_x, test_y = load_images(a.root, "test")  # the test split, read once
    teacher = teacher.to(device)
    reps = {key: classification_report(test_y, logits.argmax(1).numpy(), CLASSES)
            for key, logits in zip(("plain", "mirror"), logits_of(teacher, test_x, device))}
    main_rep = reps["mirror" if mirror else "plain"]
    cost = ms_per_face(teacher.cpu(), mirror)
    result = {
        "acc7": round(main_rep["accuracy"], 4), "macro_f1_7": round(main_rep["macro_f1"], 4),
        "mirroring": mirror, "test_images": int(len(test_y)),
        "acc7_plain": round(reps["plain"]["accuracy"], 4), "macro_f1_7_plain": round(reps["plain"]["macro_f1"], 4),
        "acc7_mirror": round(reps["mirror"]["accuracy"], 4), "macro_f1_7_mirror": round(reps["mirror"]["macro_f1"], 4),
        "ms_per_face": cost["ms_per_face"], "ms_per_face_detail": cost,
        "train_minutes": round(train_seconds / 60, 1), "device": trained_on, "threads": train_threads,
        "command": train_command, **({"evaluated_with": command} if command != train_command else {}),
        "val": {"images": int(len(val_idx)), "fraction": a.val_fraction, "seed": a.seed, "stratified": True,
                "epoch": best["epoch"], **best["val"]},
        "epochs": best["epoch"], "epochs_trained": done, "epochs_planned": a.epochs,
        "retrained_on_full_train_split": False,
        "parameters": count_parameters(teacher), "architecture": {"channels": cfg.channels, "embedding": cfg.embedding_dim,
                                                                    "dropout": cfg.dropout, "input": INPUT_SIZE},
        "settings": settings, "weights": str(weights), "weights_bytes": weights.stat().st_size,
        "per_class": main_rep["per_class"], "confusion": main_rep["confusion"], "history": history,
    }
    path = write_result(a.results, result, show={k: result[k] for k in ("acc7", "macro_f1_7", "acc7_plain", "acc7_mirror",
                                                                        "ms_per_face", "train_minutes", "epochs")})
    plot_confusion(main_rep["confusion"], CLASSES, path.with_name("pixel_teacher_confusion.png"),
                   f"pixel teacher, FER2013 test ({len(test_y)}), {'mirrored, ' if mirror else ''}acc "
                   f"{main_rep['accuracy']:.3f}, macro-F1 {main_rep['macro_f1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
