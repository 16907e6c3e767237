"""Appearance vectors for every rendering of every image of a feature file, for the hybrid model.

    python -m training.build_appearance [--features runs/features/fer2013] [--splits train test]
        -> runs/features/fer2013/<split>_appearance.npz

For each image and each of its renderings (the original and build_dataset's five --views, the
same images the landmarker saw), the eye-aligned crop is cut from that rendering with that
rendering's own landmarks, exactly as the face-mesh node cuts it from a camera frame in
appearance mode (facephi_ros/appearance), and the committed appearance network (the pixel
teacher fine-tuned on these crops, training/train_appearance.py) gives its embedding and logits.
The crops are cut once and cached (<split>_crops.npz, training/train_appearance.py reads them too). Mirrored renderings are crops of the mirrored image: their landmarks, stored
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


def cut_crops(features: Path, split: str, root: Path, cache: bool = True, limit: int = 0) -> tuple:
    """(crops (N, V, 48, 48) uint8, found (N, V), paths (N,)): each rendering's eye-aligned crop,
    cut with that rendering's own landmarks as the node cuts it from a frame (zeros where no face
    was found). Cached as <features>/<split>_crops.npz, checked against the feature file's paths."""
    from facephi_ros.appearance.crop import CROP_SIZE, aligned_crop
    from facephi_ros.data.image_folder import load_for_landmarker

    out = features / f"{split}_crops.npz"
    paths, found, lm, views = renderings_landmarks(features, split)
    if limit:
        paths, found, lm = paths[:limit], found[:limit], lm[:limit]
    if cache and not limit and out.exists():
        d = np.load(out)
        if np.array_equal(d["paths"], paths) and np.array_equal(d["found"], found):
            return d["crops"], found, paths
        print(f"{out} lists other images or faces: cutting again", flush=True)
    crops = np.zeros((len(paths), len(views), CROP_SIZE, CROP_SIZE), np.uint8)
    for j in tqdm(range(len(paths)), desc=f"crops {split}", unit="image", mininterval=10):
        p = str(paths[j]) if Path(str(paths[j])).is_absolute() else str(root / str(paths[j]))
        for k, view in enumerate(views):
            if found[j, k]:
                crops[j, k] = aligned_crop(load_for_landmarker(p, view=view), lm[j, k], CROP_SIZE)
    if cache and not limit:
        tmp = out.with_name(out.stem + ".tmp.npz")
        np.savez(tmp, crops=crops, found=found, paths=paths)
        tmp.replace(out)
    return crops, found, paths


def main(argv=None) -> int:
    from facephi_ros.appearance.model import AppearanceModel
    from facephi_ros.data.image_folder import EXTRA_VIEWS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/fer2013"),
                    help="the image folder the feature file's relative paths start from")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="network weights (default: the committed appearance network, models/appearance)")
    ap.add_argument("--precision", default="auto", choices=["auto", "int8", "float"],
                    help="the network's precision, as the node's appearance_precision (auto: int8 where it runs); "
                         "other than auto, the file is named <split>_appearance_<precision>.npz")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (a quick check)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = AppearanceModel(a.teacher, precision=a.precision)
    print(f"appearance network: {model.precision}{' (' + model.int8_note + ')' if model.int8_note else ''}", flush=True)
    for split in a.splits:
        t0 = time.time()
        crops, found, paths = cut_crops(a.features, split, a.root, limit=a.limit)
        labels = np.load(a.features / f"{split}.npz")["labels"].astype(int)[:len(paths)]
        n, nv = found.shape
        emb = np.zeros((n, nv, model.embedding_dim), np.float16)
        logits = np.zeros((n, nv, len(model.classes)), np.float32)
        jj, kk = np.nonzero(found)
        for i in tqdm(range(0, len(jj), a.batch), desc=f"appearance {split}", unit="batch", mininterval=10):
            j, k = jj[i:i + a.batch], kk[i:i + a.batch]
            e, lg = model.embed_crops(crops[j, k])
            emb[j, k], logits[j, k] = e.astype(np.float16), lg
        # the network's accuracy per rendering, on the training split only: the test split's figures
        # come from training.eval_appearance, which reads it once
        acc = [round(float((logits[found[:, k], k].argmax(1) == labels[found[:, k]]).mean()), 4)
               for k in range(nv)] if split != "test" else None
        prov = {"network": str(a.teacher or "models/appearance/appearance.safetensors"), "split": split,
                "images": int(n), "views": ["original"] + [v.name for v in EXTRA_VIEWS], "crop": "eye-aligned 48x48 grey",
                "precision": model.precision,
                "network_acc_per_view_of_found": acc, "seconds": round(time.time() - t0, 1)}
        tag = ("" if a.precision == "auto" else f"_{a.precision}") + ("_limit" if a.limit else "")
        out = a.features / f"{split}_appearance{tag}.npz"
        np.savez(out, embedding=emb, logits=logits, found=found, paths=paths, classes=np.array(model.classes),
                 provenance=json.dumps(prov))
        seen = f"; network accuracy per rendering (faces found) {acc}" if acc else ""
        print(f"{out}: {n} images x {nv} renderings{seen} ({prov['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
