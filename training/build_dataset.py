"""Build landmark features from a labelled image folder (root/<split>/<class>/*.jpg).

For every image: 478x3 landmarks, 52 blendshapes, the facial transformation matrix and whether
a face was found, computed with the node's own Landmarker (facephi_ros.landmarks). Small images
(FER2013: 48x48) are upscaled and padded first. One .npz per split with provenance.

With --views, also <split>_views.npz: the same for five more renderings of every image (mirror,
zoom, in-plane roll; facephi_ros.data.image_folder.EXTRA_VIEWS), each a real landmarker pass,
mirrored ones mirrored back. Training draws camera-like frames from them and the evaluation
shows the LSTM a stream of them.

    python -m training.build_dataset --root ../shared/data/fer2013 --out runs/features
    python -m training.build_dataset --views --views-only      # add the views to existing files
    python -m training.build_dataset --splits train --camera-views  # training-only camera views

With --camera-views, only <split>_camera_views.npz: two renderings of a small face as a camera
samples it (CAMERA_VIEWS: resampled to 56 or 42 px and moved by a fraction of a pixel). The
landmark models train on them beside the views; validation and evaluation use the views only.
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
from facephi_ros.data.image_folder import CAMERA_VIEWS, EXTRA_VIEWS, extract_many, index_split
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


def ceiling(stats: dict, n: int, workers: int, seconds: float) -> dict:
    """The landmarker alone, timed inside the workers in the same run, bounds the builder at
    workers / (landmarker time per image); the ratio shows what the rest of the builder costs."""
    ms = 1000 * stats["landmarker_seconds"] / max(n, 1)
    bound = workers * 1000 / ms if ms else float("inf")
    return {"landmarker_ms_per_image": round(ms, 2), "read_ms_per_image": round(1000 * stats["read_seconds"] / max(n, 1), 2),
            "landmarker_bound_images_per_second": round(bound, 1), "fraction_of_landmarker_bound": round(n / seconds / bound, 3)}


def _select(root: Path, split: str, limit: int):
    idx = index_split(root, split)
    paths, labels = idx.paths, idx.labels
    if limit:
        sel = np.random.default_rng(0).permutation(len(paths))[:limit]
        sel.sort()
        paths, labels = [paths[i] for i in sel], labels[sel]
    return idx, paths, labels


def build_views(root: Path, split: str, out_dir: Path, workers: int, limit: int = 0, views=EXTRA_VIEWS,
                name: str = "views") -> dict:
    """<split>_<name>.npz: found (N, V), landmarks (N, V, 478, 3), blendshapes (N, V, 52), matrix (N, V, 4, 4)."""
    idx, paths, labels = _select(root, split, limit)
    t0 = time.perf_counter()
    per_view, stats = [], {}
    with tqdm(total=len(paths) * len(views), desc=f"{split} {name}", unit="img", smoothing=0.05) as bar:
        for view in views:
            per_view.append(extract_many(paths, workers=workers, progress=bar.update, view=view, stats=stats))
    dt = time.perf_counter() - t0
    feats = {k: np.stack([v[k] for v in per_view], 1) for k in per_view[0]}
    prov = {"views": [v.__dict__ for v in views],
            "detection_rate_per_view": [round(float(f), 4) for f in feats["found"].mean(0)]}
    return _save(out_dir / f"{split}_{name}.npz", root, split, idx.classes, paths, labels, feats, prov, stats, workers, dt)


def _save(path: Path, root: Path, split: str, classes: list[str], paths: list[str], labels: np.ndarray, feats: dict,
          prov: dict, stats: dict, workers: int, seconds: float) -> dict:
    """Write the features with their provenance (source, counts, speed, code version); return the provenance."""
    n = int(feats["found"].size)  # images x views
    prov = {"source": str(root.resolve() / split), "split": split, "classes": classes, "images": len(paths), **prov,
            "seconds": round(seconds, 1), "images_per_second": round(n / seconds, 1),
            **ceiling(stats, n, workers, seconds), "workers": workers,
            "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = [str(Path(p).relative_to(root)) for p in paths]
    np.savez(path, labels=labels, paths=np.array(rel), classes=np.array(classes), provenance=json.dumps(prov), **feats)
    return prov


def build_split(root: Path, split: str, out_dir: Path, workers: int, upscale: int, pad: float, limit: int = 0) -> dict:
    idx, paths, labels = _select(root, split, limit)
    t0 = time.perf_counter()
    stats = {}
    with tqdm(total=len(paths), desc=f"{split}", unit="img", smoothing=0.05) as bar:
        feats = extract_many(paths, workers=workers, upscale=upscale, pad_fraction=pad, progress=bar.update, stats=stats)
    dt = time.perf_counter() - t0
    counts = {c: int((labels == k).sum()) for k, c in enumerate(idx.classes)}
    found = {c: int(feats["found"][labels == k].sum()) for k, c in enumerate(idx.classes)}
    prov = {"counts": counts, "faces_found": int(feats["found"].sum()), "found_per_class": found,
            "detection_rate": round(float(feats["found"].mean()), 4), "upscale": upscale, "pad_fraction": pad}
    return _save(out_dir / f"{split}.npz", root, split, idx.classes, paths, labels, feats, prov, stats, workers, dt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="image folder root (default: ../shared/data/fer2013)")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--out", type=Path, default=Path("runs/features/fer2013"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--upscale", type=int, default=SMALL_IMAGE_UPSCALE, help="side in pixels small images are upscaled to")
    ap.add_argument("--pad", type=float, default=SMALL_IMAGE_PAD, help="black padding, fraction of the upscaled side")
    ap.add_argument("--limit", type=int, default=0, help="a seeded random subset of this many images per split")
    ap.add_argument("--views", action="store_true", help=f"also write <split>_views.npz ({len(EXTRA_VIEWS)} more renderings per image)")
    ap.add_argument("--views-only", action="store_true", help="write only <split>_views.npz")
    ap.add_argument("--camera-views", action="store_true",
                    help=f"write only <split>_camera_views.npz ({len(CAMERA_VIEWS)} training-only renderings of a small face "
                         "as a camera resamples it; train_lstm's camera_views: true)")
    a = ap.parse_args(argv)
    for split in a.splits:
        if a.camera_views:
            prov = build_views(a.root, split, a.out, a.workers, a.limit, CAMERA_VIEWS, "camera_views")
            print(json.dumps({k: prov[k] for k in ("split", "images", "detection_rate_per_view", "images_per_second", "seconds")}))
            continue
        if not a.views_only:
            prov = build_split(a.root, split, a.out, a.workers, a.upscale, a.pad, a.limit)
            print(json.dumps({k: prov[k] for k in ("split", "images", "detection_rate", "images_per_second", "seconds",
                                                   "landmarker_ms_per_image", "fraction_of_landmarker_bound")}))
        if a.views or a.views_only:
            prov = build_views(a.root, split, a.out, a.workers, a.limit)
            print(json.dumps({k: prov[k] for k in ("split", "images", "detection_rate_per_view", "images_per_second", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
