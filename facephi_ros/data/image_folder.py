"""Labelled image folders (root/<split>/<class>/*.jpg) -> per-image landmark features.

Uses the node's own Landmarker (IMAGE mode) and, for small images such as FER2013's 48x48,
upscaling with black padding. Runs one landmarker per worker process.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..features.normalize import mirror_face
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


@dataclass(frozen=True)
class View:
    """One rendering of a still image for the landmarker: mirrored or not, the upscaled size and
    padding of a small image, and an in-plane rotation (degrees, counter-clockwise, black corners).

    A camera that watches a still face gives many slightly different frames, and MediaPipe's
    landmarks differ a little from frame to frame. Views stand in for those frames: each is a real
    landmarker pass, so its differences are the landmarker's own, not simulated noise.

    resample_px > 0: before anything else the image is resampled to this width (bicubic up, area
    down) and moved by (shift_px, shift_px) with bilinear interpolation, as a camera sees a small
    face: at its own pixel size and grid, a little softer than the source."""
    name: str
    flip: bool = False
    upscale: int = SMALL_IMAGE_UPSCALE
    pad_fraction: float = SMALL_IMAGE_PAD
    rotate_deg: float = 0.0
    resample_px: int = 0
    shift_px: float = 0.0


def camera_resample(img: np.ndarray, width: int, shift_px: float) -> np.ndarray:
    """img resampled to `width` pixels wide (aspect kept; bicubic up, area down) and shifted by
    (shift_px, shift_px) with bilinear interpolation: a small face as a camera's grid samples it."""
    h, w = img.shape[:2]
    height = max(1, int(round(h * width / w)))
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC if width > w else cv2.INTER_AREA)
    if shift_px:
        m = np.array([[1.0, 0.0, shift_px], [0.0, 1.0, shift_px]])
        img = cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return img


# The extra views of build_dataset --views (fixed, so feature files are reproducible).
EXTRA_VIEWS = (
    View("mirror", flip=True),
    View("zoom-in", upscale=160, pad_fraction=0.2),
    View("roll+6", rotate_deg=6.0),
    View("mirror-zoom-out", flip=True, upscale=128, pad_fraction=0.3),
    View("mirror-roll-6", flip=True, upscale=152, rotate_deg=-6.0),
)

# Training-only views of build_dataset --camera-views: the face resampled as a camera at 2-4 m
# sees it (docs/faces.md: a 48 px image redrawn at 48-64 px and moved by a fraction of a pixel
# costs the landmark-only model about 5 points when it has only seen the clean renderings).
CAMERA_VIEWS = (
    View("camera-56", resample_px=56, shift_px=0.4),
    View("mirror-camera-42", flip=True, resample_px=42, shift_px=0.3),
)


def load_for_landmarker(path: str, upscale: int = SMALL_IMAGE_UPSCALE, pad_fraction: float = SMALL_IMAGE_PAD,
                        view: View | None = None) -> np.ndarray:
    """RGB image ready for the landmarker; `view` (if given) sets flip, size, padding and rotation."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if view is not None:
        upscale, pad_fraction = view.upscale, view.pad_fraction
        if view.flip:
            img = np.ascontiguousarray(img[:, ::-1])
        if view.resample_px:
            img = camera_resample(img, view.resample_px, view.shift_px)
    if min(img.shape[:2]) < SMALL_IMAGE:
        img = prepare_small_image(img, upscale, pad_fraction)
    if view is not None and view.rotate_deg:
        h, w = img.shape[:2]
        rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), view.rotate_deg, 1.0)
        img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
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


def extract_one(lm: Landmarker, path: str, upscale: int = SMALL_IMAGE_UPSCALE, pad_fraction: float = SMALL_IMAGE_PAD,
                view: View | None = None):
    """(found, landmarks (478, 3), blendshapes (52,), matrix (4, 4)); zeros when no face.
    A mirrored view's face is mirrored back, so every view describes the face as the original shows it."""
    return _pick_face(lm.detect(load_for_landmarker(path, upscale, pad_fraction, view)), view)


def _pick_face(faces, view: View | None):
    if not faces:
        return False, np.zeros((NUM_LANDMARKS, 3), np.float32), np.zeros(NUM_BLENDSHAPES, np.float32), np.eye(4, dtype=np.float32)
    # the largest face, should there be several
    f = max(faces, key=lambda f: f.bbox[2] * f.bbox[3])
    lms, bs, mat = f.landmarks, f.blendshapes, f.matrix
    if view is not None and view.flip:
        lms, bs, mat = mirror_face(lms, bs, mat)
    return True, lms.astype(np.float32), bs.astype(np.float32), mat.astype(np.float32)


def _work(item):
    path, view = item
    t0 = time.perf_counter()
    img = load_for_landmarker(path, *_worker_cfg, view)
    t1 = time.perf_counter()
    faces = _worker_lm.detect(img)
    t2 = time.perf_counter()
    return (*_pick_face(faces, view), t1 - t0, t2 - t1)


def extract_many(paths: list[str], workers: int = 2, model_path=None, upscale: int = SMALL_IMAGE_UPSCALE, pad_fraction: float = SMALL_IMAGE_PAD,
                 progress=None, view: View | None = None, stats: dict | None = None) -> dict[str, np.ndarray]:
    """Features of every image, in order. `progress`: a callable(n_done) (e.g. tqdm.update).
    `view`: render every image this way (default: as it is, small images upscaled and padded).
    `stats`: a dict that receives the workers' summed seconds reading images and in the landmarker."""
    n = len(paths)
    out = {"found": np.zeros(n, bool), "landmarks": np.zeros((n, NUM_LANDMARKS, 3), np.float32),
           "blendshapes": np.zeros((n, NUM_BLENDSHAPES), np.float32), "matrix": np.zeros((n, 4, 4), np.float32)}
    ctx = mp.get_context("spawn")  # MediaPipe graphs do not survive fork
    slots = ctx.Value("i", 0)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(model_path, upscale, pad_fraction, slots)) as pool:
        read_s = detect_s = 0.0
        for i, (found, lm, bs, mat, t_read, t_detect) in enumerate(pool.imap(_work, [(p, view) for p in paths], chunksize=32)):
            out["found"][i], out["landmarks"][i], out["blendshapes"][i], out["matrix"][i] = found, lm, bs, mat
            read_s, detect_s = read_s + t_read, detect_s + t_detect
            if progress:
                progress(1)
    if stats is not None:
        stats["read_seconds"] = stats.get("read_seconds", 0.0) + read_s
        stats["landmarker_seconds"] = stats.get("landmarker_seconds", 0.0) + detect_s
    return out
