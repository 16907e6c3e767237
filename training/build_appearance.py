"""Appearance vectors for every rendering of every image of a feature file, for the hybrid model.

    python -m training.build_appearance [--features runs/features/fer2013] [--splits train test]
        -> runs/features/fer2013/<split>_appearance.npz

For each image and each of its renderings (the original and build_dataset's five --views, the
same images the landmarker saw), the eye-aligned crop is cut from that rendering with that
rendering's own landmarks, exactly as the face-mesh node cuts it from a camera frame in
appearance mode (facephi_ros/appearance), and the committed pixel teacher gives its embedding
and logits. Mirrored renderings are crops of the mirrored image: their landmarks, stored
mirrored back, are mirrored again first. A rendering without a face has no vector (found false).

Writes embedding (N, V, E) float16, logits (N, V, C) float32, found (N, V) and the paths, in the
feature file's order; training checks the order.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent


def renderings_landmarks(features: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(paths (N,), found (N, V), raw landmarks (N, V, 478, 3) as each rendering shows them, views)."""
    from facephi_ros.data.image_folder import EXTRA_VIEWS
    from facephi_ros.features.normalize import landmark_mirror

    d = np.load(features / f"{split}.npz")
    v = np.load(features / f"{split}_views.npz")
    if not np.array_equal(v["paths"], d["paths"]):
        raise SystemExit(f"{split}_views.npz does not list the same images as {split}.npz")
    lm = np.concatenate([d["landmarks"][:, None], v["landmarks"]], 1)
    found = np.concatenate([d["found"][:, None], v["found"]], 1)
    views = [None, *EXTRA_VIEWS]
    perm = landmark_mirror()
    for k, view in enumerate(views):
        if view is not None and view.flip:  # stored mirrored back: mirror again to the rendering's own
            lm[:, k] = lm[:, k][:, perm]
            lm[:, k, :, 0] = 1.0 - lm[:, k, :, 0]
    return d["paths"], found, lm, views


def main(argv=None) -> int:
    from facephi_ros.appearance.model import AppearanceModel
    from facephi_ros.data.image_folder import load_for_landmarker

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"),
                    help="the image folder the feature file's relative paths start from")
    ap.add_argument("--teacher", type=Path, default=None, help="teacher weights (default: the committed ones)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (a quick check)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = AppearanceModel(a.teacher)
    for split in a.splits:
        t0 = time.time()
        paths, found, lm, views = renderings_landmarks(a.features, split)
        labels = np.load(a.features / f"{split}.npz")["labels"].astype(int)
        if a.limit:
            paths, found, lm, labels = paths[:a.limit], found[:a.limit], lm[:a.limit], labels[:a.limit]
        n, nv = found.shape
        emb = np.zeros((n, nv, model.embedding_dim), np.float16)
        logits = np.zeros((n, nv, len(model.classes)), np.float32)
        for i in tqdm(range(0, n, a.batch), desc=f"appearance {split}", unit="batch"):
            crops, where = [], []
            for j in range(i, min(i + a.batch, n)):
                p = str(paths[j]) if Path(str(paths[j])).is_absolute() else str(a.root / str(paths[j]))
                for k, view in enumerate(views):
                    if found[j, k]:
                        crops.append(model.crops(load_for_landmarker(p, view=view), [lm[j, k]])[0])
                        where.append((j, k))
            if crops:
                e, lg = model.embed_crops(np.stack(crops))
                jj, kk = np.array(where).T
                emb[jj, kk], logits[jj, kk] = e.astype(np.float16), lg
        acc = [round(float((logits[found[:, k], k].argmax(1) == labels[found[:, k]]).mean()), 4) for k in range(nv)]
        prov = {"teacher": str(a.teacher or "models/pixel_teacher/pixel_teacher.safetensors"), "split": split,
                "images": int(n), "views": ["original"] + [v.name for v in views[1:]], "crop": "eye-aligned 48x48 grey",
                "teacher_acc_per_view_of_found": acc, "seconds": round(time.time() - t0, 1)}
        out = a.features / f"{split}_appearance{'_limit' if a.limit else ''}.npz"
        np.savez(out, embedding=emb, logits=logits, found=found, paths=paths, classes=np.array(model.classes),
                 provenance=json.dumps(prov))
        print(f"{out}: {n} images x {nv} renderings; teacher accuracy per rendering (faces found) {acc} "
              f"({prov['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
