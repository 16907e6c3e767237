"""Build landmark features from a labelled image folder (root/<split>/<class>/*.jpg).

For every image: 478x3 landmarks, 52 blendshapes, the facial transformation matrix and whether
a face was found, computed with the node's own Landmarker (facephi_ros.landmarks). Small images
(FER2013: 48x48) are upscaled and padded first. One .npz per split with provenance.

    python -m training.build_dataset --root ../shared/data/fer2013 --out runs/features
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facephi_ros import __version__
from facephi_ros.data.image_folder import extract_many, index_split
from facephi_ros.landmarks.landmarker import SMALL_IMAGE_PAD, SMALL_IMAGE_UPSCALE

DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fer2013"


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "facephi_ros", "training"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return f"facephi_ros {__version__} git {rev}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return f"facephi_ros {__version__}"


def build_split(root: Path, split: str, out_dir: Path, workers: int, upscale: int, pad: float, limit: int = 0) -> dict:
    idx = index_split(root, split)
    paths, labels = idx.paths, idx.labels
    if limit:
        sel = np.random.default_rng(0).permutation(len(paths))[:limit]
        sel.sort()
        paths, labels = [paths[i] for i in sel], labels[sel]
    t0 = time.perf_counter()
    with tqdm(total=len(paths), desc=f"{split}", unit="img", smoothing=0.05) as bar:
        feats = extract_many(paths, workers=workers, upscale=upscale, pad_fraction=pad, progress=bar.update)
    dt = time.perf_counter() - t0
    counts = {c: int((labels == k).sum()) for k, c in enumerate(idx.classes)}
    found = {c: int(feats["found"][labels == k].sum()) for k, c in enumerate(idx.classes)}
    prov = {
        "source": str(root.resolve() / split), "split": split, "classes": idx.classes, "counts": counts,
        "images": len(paths), "faces_found": int(feats["found"].sum()), "found_per_class": found,
        "detection_rate": round(float(feats["found"].mean()), 4), "seconds": round(dt, 1),
        "images_per_second": round(len(paths) / dt, 1), "workers": workers, "upscale": upscale, "pad_fraction": pad,
        "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = [str(Path(p).relative_to(root)) for p in paths]
    np.savez(out_dir / f"{split}.npz", labels=labels, paths=np.array(rel), classes=np.array(idx.classes),
             provenance=json.dumps(prov), **feats)
    return prov


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="image folder root (default: ../shared/data/fer2013)")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--out", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--upscale", type=int, default=SMALL_IMAGE_UPSCALE, help="side in pixels small images are upscaled to")
    ap.add_argument("--pad", type=float, default=SMALL_IMAGE_PAD, help="black padding, fraction of the upscaled side")
    ap.add_argument("--limit", type=int, default=0, help="a seeded random subset of this many images per split")
    a = ap.parse_args(argv)
    for split in a.splits:
        prov = build_split(a.root, split, a.out, a.workers, a.upscale, a.pad, a.limit)
        print(json.dumps({k: prov[k] for k in ("split", "images", "detection_rate", "images_per_second", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
