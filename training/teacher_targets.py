"""The pixel teacher's logits for every image of a feature file, for distillation.

    python -m training.teacher_targets [--features runs/features/fer2013] [--split train]
        -> runs/features/fer2013/teacher_train.npz

Each image is read from its path in the feature file (the same FER2013 pixels the landmark
features come from) and given to the committed teacher (models/pixel_teacher) with test-time
mirroring. The logits are stored in the feature file's order; training checks the order and
the class list before it uses them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    import cv2

    from facephi_ros.models.distill import TeacherTargets
    from facephi_ros.models.pixel_teacher import load_teacher

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--split", default="train")
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"),
                    help="the image folder the feature file's relative paths start from")
    ap.add_argument("--teacher", type=Path, default=None, help="teacher weights (default: the committed ones)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    d = np.load(a.features / f"{a.split}.npz")
    classes, paths = [str(c) for c in d["classes"]], d["paths"]
    teacher = load_teacher(a.teacher, expect_classes=classes)
    t0 = time.time()
    logits = np.empty((len(paths), len(classes)), np.float32)
    for i in tqdm(range(0, len(paths), a.batch), desc=f"teacher on {a.split}", unit="batch"):
        crops = []
        for p in paths[i:i + a.batch]:
            g = cv2.imread(str(p if Path(p).is_absolute() else a.root / p), cv2.IMREAD_GRAYSCALE)
            if g is None:
                raise SystemExit(f"cannot read image {p}")
            crops.append(g)
        logits[i:i + len(crops)] = teacher.predict(crops, mirror=True)[1].numpy()
    labels = d["labels"].astype(int)
    acc = float((logits.argmax(1) == labels).mean())
    prov = {"teacher": str(a.teacher or "models/pixel_teacher/pixel_teacher.safetensors"), "mirror": True,
            "split": a.split, "images": int(len(paths)), "teacher_acc_on_split": round(acc, 4),
            "seconds": round(time.time() - t0, 1)}
    out = TeacherTargets(logits, paths, classes, prov).save(a.features / f"teacher_{a.split}.npz")
    print(f"{out}: {len(paths)} images, teacher accuracy on {a.split} {acc:.4f} ({prov['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
