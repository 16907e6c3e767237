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
    # with views=True: view 0 is the original, then <split>_views.npz's views (mirrored ones mirrored back)
    view_found: np.ndarray | None = None  # (N, V) bool
    view_landmarks: np.ndarray | None = None  # (N, V, 478, 3) normalised (zeros where not found)
    view_blendshapes: np.ndarray | None = None  # (N, V, 52)

    @property
    def found_any(self) -> np.ndarray:
        """(N,) a face was found in the original or in any view."""
        return self.found if self.view_found is None else self.view_found.any(1)


def load_split(features_dir: str | Path, split: str, classes: list[str] | None = None, views: bool = False,
               camera_views: bool = False) -> FeatureSplit:
    """Load `split`.npz; keep only images whose class is in `classes` (all when None), relabelled.
    views: also load `split`_views.npz (from build_dataset --views) into the view_* fields.
    camera_views (with views): `split`_camera_views.npz (build_dataset --camera-views) follows them."""
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
    out = FeatureSplit(classes, labels[keep], found, lm, norm, d["blendshapes"][keep], mat, d["paths"][keep],
                       json.loads(str(d["provenance"])))
    if views:
        vpath = Path(features_dir) / f"{split}_views.npz"
        if not vpath.is_file():
            raise FileNotFoundError(f"{vpath} not found: run `python -m training.build_dataset --views-only --out {features_dir}`")
        files = [vpath]
        if camera_views:
            files.append(Path(features_dir) / f"{split}_camera_views.npz")
            if not files[-1].is_file():
                raise FileNotFoundError(f"{files[-1]} not found: run `python -m training.build_dataset --splits {split} "
                                        f"--camera-views --out {features_dir}`")
        vfs, vnorms, vbss = [found[:, None]], [norm[:, None]], [out.blendshapes[:, None]]
        for f in files:
            v = np.load(f)
            if not np.array_equal(v["paths"], d["paths"]):
                raise ValueError(f"{f} does not list the same images as {path}: rebuild it with build_dataset")
            vf, vlm, vmat = v["found"][keep], v["landmarks"][keep], v["matrix"][keep]
            vnorm = np.zeros_like(vlm)
            vnorm[vf] = normalize_landmarks(vlm[vf], vmat[vf])
            vfs.append(vf)
            vnorms.append(vnorm)
            vbss.append(v["blendshapes"][keep])
        out.view_found = np.concatenate(vfs, 1)
        out.view_landmarks = np.concatenate(vnorms, 1)
        out.view_blendshapes = np.concatenate(vbss, 1)
    return out


def load_appearance(features_dir: str | Path, split: str, paths: np.ndarray, tag: str = "") -> tuple[np.ndarray, dict]:
    """(appearance vectors (N, V, E + C) float32: the appearance network's embedding then its
    logits per rendering, in the order of `paths`; the file's provenance with its classes and
    embedding size) from `split`_appearance`tag`.npz (python -m training.build_appearance)."""
    path = Path(features_dir) / f"{split}_appearance{tag}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training.build_appearance --features {features_dir}`")
    d = np.load(path)
    row = {str(p): i for i, p in enumerate(d["paths"])}
    missing = [str(p) for p in paths if str(p) not in row]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} images of the feature file (first: {missing[0]}): rebuild it")
    sel = np.array([row[str(p)] for p in paths], np.int64)
    emb, logits = d["embedding"][sel].astype(np.float32), d["logits"][sel].astype(np.float32)
    info = {**json.loads(str(d["provenance"])), "classes": [str(c) for c in d["classes"]], "embedding_dim": emb.shape[-1]}
    return np.concatenate([emb, logits], -1), info
