"""Derive the face geometry the feature module uses, from detected faces:
facephi_ros/features/mirror_map.json (which landmark mirrors which) and
facephi_ros/features/canonical_face.json (the mean pose-free face, made mirror-symmetric: the
target of the rigid alignment).

The mean pose-free face over many detected faces is nearly symmetric; mirroring it (x -> -x)
and solving the assignment between the mean face and its mirror image gives each landmark's
partner. The result must be an involution; points on the midline map to themselves.

    python -m training.derive_face_geometry --features runs/features/fer2013/train.npz
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from facephi_ros.features.normalize import (
    _CANONICAL_FILE,
    _MIRROR_FILE,
    normalize_landmarks,
)


def derive(landmarks: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, float]:
    mean = normalize_landmarks(landmarks, matrices, refine=False).mean(axis=0)
    mean[:, 0] -= mean[:, 0].mean()
    mirrored = mean * np.array([-1.0, 1.0, 1.0])
    cost = np.linalg.norm(mean[:, None, :] - mirrored[None, :, :], axis=-1)
    cost = (cost + cost.T) / 2
    rows, cols = linear_sum_assignment(cost)
    perm = cols[np.argsort(rows)]
    bad = np.nonzero(perm[perm] != np.arange(len(perm)))[0]
    for i in bad:  # make it an involution: keep the cheaper direction
        j = perm[i]
        if perm[j] != i:
            perm[j] = i
    residual = float(np.linalg.norm(mean - mirrored[perm], axis=-1).mean())
    return perm, residual, mean


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=Path("runs/features/fer2013/train.npz"))
    ap.add_argument("--max", type=int, default=5000)
    a = ap.parse_args(argv)
    d = np.load(a.features)
    idx = np.nonzero(d["found"])[0][: a.max]
    perm, residual, mean = derive(d["landmarks"][idx], d["matrix"][idx])
    assert np.array_equal(perm[perm], np.arange(len(perm))), "not an involution"
    _MIRROR_FILE.write_text(json.dumps({
        "about": "MediaPipe face mesh: index of each landmark's left/right mirror partner",
        "derived_by": "python -m training.derive_mirror_map", "faces": int(len(idx)),
        "mean_residual": round(residual, 5), "self_symmetric": int((perm == np.arange(len(perm))).sum()),
        "mirror": perm.tolist()}))
    sym = (mean + mean[perm] * np.array([-1.0, 1.0, 1.0])) / 2  # mirror-symmetric mean face
    sym -= sym.mean(axis=0)
    sym /= np.sqrt((sym ** 2).sum(axis=1).mean())
    _CANONICAL_FILE.write_text(json.dumps({
        "about": "mean pose-free MediaPipe face (unit RMS, camera axes: x right, y up, z to the viewer), mirror-symmetric",
        "derived_by": "python -m training.derive_face_geometry", "faces": int(len(idx)),
        "landmarks": np.round(sym, 5).tolist()}))
    print(f"{_MIRROR_FILE}: {len(idx)} faces, {int((perm == np.arange(len(perm))).sum())} midline points, "
          f"mean residual {residual:.4f}; iris 468->{perm[468]}, 473->{perm[473]}; canonical face -> {_CANONICAL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
