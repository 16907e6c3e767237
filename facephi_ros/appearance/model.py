"""The appearance model the face-mesh node runs in appearance mode: the pixel teacher
(facephi_ros/models/pixel_teacher.py), loaded from its one committed weights file, on aligned
face crops (crop.py). Each face gets the teacher's embedding and its class logits, as numbers.

    model = AppearanceModel()                  # models/pixel_teacher/pixel_teacher.safetensors
    emb, logits = model(rgb_frame, [landmarks_of_face_1, landmarks_of_face_2])   # (F, 256), (F, 7)

For speed on a CPU the network is traced and frozen with torch.jit (batch norms folded into the
convolutions, oneDNN kernels): the same weights, the same numbers to float rounding, in 0.6-0.9x
the eager network's time (docs/results/appearance.json has the measured figures).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.pixel_teacher import CLASSES, load_teacher, standardise
from .crop import CROP_SIZE, aligned_crop


class AppearanceModel:
    def __init__(self, path: str | Path | None = None, optimize: bool = True):
        self.teacher = load_teacher(path)  # ModelFileError (one line) for a missing or bad file
        self.size = int(self.teacher.cfg.input_size)
        if self.size != CROP_SIZE:
            from ..models.lstm import ModelFileError

            raise ModelFileError(f"the appearance model reads {self.size}x{self.size} crops; the aligned crop is "
                                 f"{CROP_SIZE}x{CROP_SIZE}")
        self.classes = self.teacher.classes
        self.embedding_dim = self.teacher.cfg.embedding_dim
        self.net = self._optimized() if optimize else self.teacher

    def _optimized(self):
        import warnings

        # torch.jit is deprecated in favour of torch.compile, which needs a C++ toolchain and
        # tens of seconds at start: jit still works and is what the measured figures use
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore", DeprecationWarning)
            example = torch.zeros(1, 1, self.size, self.size)
            traced = torch.jit.trace(self.teacher, example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def crops(self, image: np.ndarray, faces_landmarks) -> np.ndarray:
        """(F, 48, 48) uint8 aligned crops of each face (normalised landmarks (478, 2+) each)."""
        return np.stack([aligned_crop(image, lm, self.size) for lm in faces_landmarks]) if len(faces_landmarks) else \
            np.zeros((0, self.size, self.size), np.uint8)

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, 48, 48) uint8 crops -> (embedding (F, E), logits (F, C)) float32 numpy arrays."""
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), np.float32), np.zeros((0, len(self.classes)), np.float32)
        x = standardise(torch.from_numpy(np.ascontiguousarray(crops, np.uint8))[:, None])
        emb, logits = self.net(x)
        return emb.numpy().astype(np.float32), logits.numpy().astype(np.float32)

    def __call__(self, image: np.ndarray, faces_landmarks) -> tuple[np.ndarray, np.ndarray]:
        return self.embed_crops(self.crops(image, faces_landmarks))


__all__ = ["AppearanceModel", "CLASSES"]
