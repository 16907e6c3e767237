"""Labelled image folders (root/<split>/<class>/*.jpg) -> per-image landmark features.

Uses the node's own Landmarker (IMAGE mode) and, for small images such as FER2013's 48x48,
upscaling with black padding. Runs one landmarker per worker process.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..landmarks.landmarker import (
    NUM_BLENDSHAPES,
    NUM_LANDMARKS,
    SMALL_IMAGE_PAD,
    SMALL_IMAGE_UPSCALE,
    Landmarker,
    prepare_small_image,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SMALL_IMAGE = 128  # images with a side below this are upscaled and padded


@dataclass
class FolderIndex:
    classes: list[str]
    paths: list[str]
    labels: np.ndarray


def index_split(root: str | Path, split: str) -> FolderIndex:
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"no split folder {base} (expected root/<split>/<class>/*.jpg)")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{base} has no class folders")
    paths, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(f for f in (base / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(f) for f in files]
        labels += [k] * len(files)
    return FolderIndex(classes, paths, np.array(labels, np.int16))


def load_for_landmarker(path: str, upscale: int = SMALL_IMAGE_UPSCALE, pad_fraction: float = SMALL_IMAGE_PAD) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if min(img.shape[:2]) < SMALL_IMAGE:
        img = prepare_small_image(img, upscale, pad_fraction)
    return img


_worker_lm: Landmarker | None = None


def _init_worker(model_path, upscale, pad, slots):
    global _worker_lm, _worker_cfg
    os.environ.setdefault("GLOG_minloglevel", "2")
    # One core per worker: MediaPipe's own thread pools otherwise fight over both cores
    # (measured: 148 images/s unpinned, see docs/lstm.md for the pinned figure).
    try:
        cores = sorted(os.sched_getaffinity(0))
        with slots.get_lock():
            k = slots.value
            slots.value += 1
        os.sched_setaffinity(0, {cores[k % len(cores)]})
    except (AttributeError, OSError):
        pass
    _worker_lm = Landmarker(model_path, num_faces=1, video=False)
    _worker_cfg = (upscale, pad)


def extract_one(lm: Landmarker, path: str, upscale: int = SMALL_IMAGE_UPSCALE, pad_fraction: float = SMALL_IMAGE_PAD):
    """(found, landmarks (478, 3), blendshapes (52,), matrix (4, 4)); zeros when no face."""
    faces = lm.detect(load_for_landmarker(path, upscale, pad_fraction))
    if not faces:
        return False, np.zeros((NUM_LANDMARKS, 3), np.float32), np.zeros(NUM_BLENDSHAPES, np.float32), np.eye(4, dtype=np.float32)
    # the largest face, should there be several
    f = max(faces, key=lambda f: f.bbox[2] * f.bbox[3])
    return True, f.landmarks, f.blendshapes, f.matrix.astype(np.float32)


def _work(path):
    return extract_one(_worker_lm, path, *_worker_cfg)


def extract_many(paths: list[str], workers: int = 2, model_path=None, upscale: int = SMALL_IMAGE_UPSCALE, pad_fraction: float = SMALL_IMAGE_PAD,
                 progress=None) -> dict[str, np.ndarray]:
    """Features of every image, in order. `progress`: a callable(n_done) (e.g. tqdm.update)."""
    n = len(paths)
    out = {"found": np.zeros(n, bool), "landmarks": np.zeros((n, NUM_LANDMARKS, 3), np.float32),
           "blendshapes": np.zeros((n, NUM_BLENDSHAPES), np.float32), "matrix": np.zeros((n, 4, 4), np.float32)}
    ctx = mp.get_context("spawn")  # MediaPipe graphs do not survive fork
    slots = ctx.Value("i", 0)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(model_path, upscale, pad_fraction, slots)) as pool:
        for i, (found, lm, bs, mat) in enumerate(pool.imap(_work, paths, chunksize=32)):
            out["found"][i], out["landmarks"][i], out["blendshapes"][i], out["matrix"][i] = found, lm, bs, mat
            if progress:
                progress(1)
    return out
