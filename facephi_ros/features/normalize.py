"""Landmark normalisation, mirroring and the per-frame feature vector.

normalize_landmarks removes what a face's position, size and head rotation add to its landmarks:
  1. MediaPipe's normalised image coordinates -> a metric-like frame: x * width, y * height,
     z * width (MediaPipe's z has x's scale), then flipped to the camera convention of the
     facial transformation matrix (x right, y up, z towards the viewer);
  2. centred on the landmarks' mean;
  3. rotated back by the inverse of the matrix's rotation (the head pose), so that every face
     looks straight into the camera;
  4. scaled to unit RMS distance from the centre;
  5. refined: the remaining rotation is removed by aligning rigid landmarks (forehead, nose,
     eye corners, face contour: they do not move with expressions) to a canonical mean face
     (Kabsch). Measured on one real face placed at four positions and sizes in a bigger
     image: the matrix alone leaves the copies 0.03-0.046 apart (mean absolute difference of
     unit-RMS coordinates; two different people differ by 0.017-0.057), because its rotation
     estimate moves by about 5 degrees with the face's position; with the refinement they are
     0.004-0.009 apart. A 20-degree in-plane roll is removed either way (0.005).
The result depends on the face's shape and expression only.

Mirroring (horizontal-flip augmentation) flips x, swaps each landmark with its mirror partner
(facephi_ros/features/mirror_map.json, derived from data by training/derive_mirror_map.py),
swaps Left/Right blendshapes, and conjugates the matrix with diag(-1, 1, 1, 1).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..landmarks.landmarker import BLENDSHAPE_NAMES, NUM_BLENDSHAPES, NUM_LANDMARKS

_MIRROR_FILE = Path(__file__).with_name("mirror_map.json")
_CANONICAL_FILE = Path(__file__).with_name("canonical_face.json")
# Landmarks that expressions hardly move: nose bridge and tip, forehead, eye corners, face contour, chin.
RIGID_LANDMARKS = np.array([1, 4, 5, 6, 168, 197, 195, 10, 151, 9, 8, 33, 133, 263, 362, 234, 454, 127, 356, 21, 251,
                            116, 345, 50, 280, 152, 175])
_FLIP = np.diag([-1.0, 1.0, 1.0, 1.0])


def _partner(name: str) -> str:
    if name.endswith("Left"):
        return name[:-4] + "Right"
    if name.endswith("Right"):
        return name[:-5] + "Left"
    return name


BLENDSHAPE_MIRROR = np.array([BLENDSHAPE_NAMES.index(_partner(n)) for n in BLENDSHAPE_NAMES])


@lru_cache(maxsize=1)
def landmark_mirror() -> np.ndarray:
    """Index of each landmark's mirror partner (an involution over 478 indices)."""
    if not _MIRROR_FILE.exists():
        raise FileNotFoundError(f"{_MIRROR_FILE} missing: run `python -m training.derive_mirror_map`")
    perm = np.array(json.loads(_MIRROR_FILE.read_text())["mirror"], np.int64)
    if perm.shape != (NUM_LANDMARKS,) or not np.array_equal(perm[perm], np.arange(NUM_LANDMARKS)):
        raise ValueError(f"{_MIRROR_FILE} is not a mirror permutation of {NUM_LANDMARKS} landmarks")
    return perm


@lru_cache(maxsize=1)
def canonical_face() -> np.ndarray:
    """(478, 3) mean pose-free face (mirror-symmetric), the target of the rigid alignment."""
    if not _CANONICAL_FILE.exists():
        raise FileNotFoundError(f"{_CANONICAL_FILE} missing: run `python -m training.derive_face_geometry`")
    c = np.array(json.loads(_CANONICAL_FILE.read_text())["landmarks"], np.float64)
    if c.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"{_CANONICAL_FILE} does not hold {NUM_LANDMARKS} 3-D points")
    return c


def mirror_blendshapes(bs: np.ndarray) -> np.ndarray:
    return bs[..., BLENDSHAPE_MIRROR]


def mirror_face(landmarks: np.ndarray, blendshapes: np.ndarray, matrix: np.ndarray):
    """The same face seen in a horizontally flipped image (normalised image coordinates)."""
    lm = landmarks[..., landmark_mirror(), :].copy()
    lm[..., 0] = 1.0 - lm[..., 0]
    return lm, mirror_blendshapes(blendshapes), _FLIP @ matrix @ _FLIP


def to_camera_frame(landmarks: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalised image coordinates -> camera-convention metric-like coordinates (x right, y up,
    z towards the viewer), in pixels. Works on (..., 478, 3)."""
    p = np.empty_like(landmarks, dtype=np.float64)
    p[..., 0] = landmarks[..., 0] * width
    p[..., 1] = -landmarks[..., 1] * height
    p[..., 2] = -landmarks[..., 2] * width
    return p


def rotation_of(matrix: np.ndarray) -> np.ndarray:
    """The rotation part of (..., 4, 4) transformation matrices, orthonormalised (SVD)."""
    r = np.asarray(matrix, np.float64)[..., :3, :3]
    u, _, vt = np.linalg.svd(r)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt


def _unit_rms(p: np.ndarray) -> np.ndarray:
    p = p - p.mean(axis=-2, keepdims=True)
    rms = np.sqrt((p ** 2).sum(axis=-1).mean(axis=-1))[..., None, None]
    return p / np.maximum(rms, 1e-9)


def rigid_alignment(p: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations A minimising |p[RIGID] A - target[RIGID]| (Kabsch, no reflection)."""
    P = p[..., RIGID_LANDMARKS, :]
    P = P - P.mean(axis=-2, keepdims=True)
    Q = target[RIGID_LANDMARKS] - target[RIGID_LANDMARKS].mean(axis=0)
    u, _, vt = np.linalg.svd(np.swapaxes(P, -1, -2) @ Q)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt


def normalize_landmarks(landmarks: np.ndarray, matrix: np.ndarray | None, width: float = 1.0, height: float = 1.0,
                        remove_pose: bool = True, refine: bool = True) -> np.ndarray:
    """(..., 478, 3) -> centred, pose-free, unit-RMS landmarks (float32). See the module doc."""
    p = to_camera_frame(np.asarray(landmarks, np.float64), width, height)
    p -= p.mean(axis=-2, keepdims=True)
    if remove_pose and matrix is not None:
        r = rotation_of(matrix)
        p = p @ r  # row vectors: p @ R == (R^T p^T)^T, the inverse rotation
    p = _unit_rms(p)
    if remove_pose and refine:
        p = _unit_rms(p @ rigid_alignment(p, canonical_face()))
    return p.astype(np.float32)


def pose_angles(matrix: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees from a facial transformation matrix (for reports)."""
    r = rotation_of(matrix)
    yaw = np.degrees(np.arcsin(np.clip(r[..., 0, 2], -1, 1)))
    pitch = np.degrees(np.arctan2(-r[..., 1, 2], r[..., 2, 2]))
    roll = np.degrees(np.arctan2(-r[..., 0, 1], r[..., 0, 0]))
    return np.stack([yaw, pitch, roll], axis=-1)


@dataclass
class FeatureConfig:
    """What goes into the per-frame feature vector. Travels with the weights (checked on load)."""
    blendshapes: bool = True
    landmarks: bool = True
    landmark_dims: int = 3  # 2: x, y only; 3: x, y, z
    landmark_subset: list = field(default_factory=list)  # empty: all 478
    pose: str = "matrix+rigid"  # head rotation removed by the matrix, then refined on rigid landmarks

    @property
    def dim(self) -> int:
        n = len(self.landmark_subset) or NUM_LANDMARKS
        return (NUM_BLENDSHAPES if self.blendshapes else 0) + (n * self.landmark_dims if self.landmarks else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(**d)


def frame_features(cfg: FeatureConfig, landmarks: np.ndarray, blendshapes: np.ndarray, matrix: np.ndarray,
                   width: float = 1.0, height: float = 1.0) -> np.ndarray:
    """(..., dim) float32 feature vectors from raw landmarker output (batched over leading axes)."""
    parts = []
    if cfg.blendshapes:
        parts.append(np.asarray(blendshapes, np.float32))
    if cfg.landmarks:
        if cfg.pose not in ("matrix", "matrix+rigid"):
            raise ValueError(f"unknown pose normalisation '{cfg.pose}'")
        lm = normalize_landmarks(landmarks, matrix, width, height, refine=cfg.pose == "matrix+rigid")
        if cfg.landmark_subset:
            lm = lm[..., cfg.landmark_subset, :]
        lm = lm[..., : cfg.landmark_dims]
        parts.append(lm.reshape(*lm.shape[:-2], -1))
    return np.concatenate(parts, axis=-1).astype(np.float32)
