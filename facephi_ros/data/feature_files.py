"""Feature files written by training/build_dataset.py, loaded for training and evaluation."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..features.normalize import normalize_landmarks


@dataclass
class FeatureSplit:
    classes: list[str]  # the requested class list
    labels: np.ndarray  # (N,) index into classes
    found: np.ndarray  # (N,) bool
    landmarks: np.ndarray  # (N, 478, 3) raw MediaPipe landmarks
    norm_landmarks: np.ndarray  # (N, 478, 3) pose-free, centred, unit RMS (zeros where not found)
    blendshapes: np.ndarray  # (N, 52)
    matrix: np.ndarray  # (N, 4, 4)
    paths: np.ndarray
    provenance: dict


def load_split(features_dir: str | Path, split: str, classes: list[str] | None = None) -> FeatureSplit:
    """Load `split`.npz; keep only images whose class is in `classes` (all when None), relabelled."""
    path = Path(features_dir) / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training.build_dataset --out {features_dir}`")
    d = np.load(path)
    src_classes = [str(c) for c in d["classes"]]
    classes = list(classes or src_classes)
    missing = [c for c in classes if c not in src_classes]
    if missing:
        raise ValueError(f"classes {missing} are not in {path} (it has {src_classes})")
    remap = np.array([classes.index(c) if c in classes else -1 for c in src_classes])
    labels = remap[d["labels"].astype(int)]
    keep = labels >= 0
    found = d["found"][keep]
    lm, mat = d["landmarks"][keep], d["matrix"][keep]
    norm = np.zeros_like(lm)
    norm[found] = normalize_landmarks(lm[found], mat[found])
    return FeatureSplit(classes, labels[keep], found, lm, norm, d["blendshapes"][keep], mat, d["paths"][keep],
                        json.loads(str(d["provenance"])))
