"""FacePhi's second input: the expression embedding of a frozen per-frame emotion model.

The aligned point encoder sees the 478 landmarks as a point set. The per-frame emotion model
(models/frame_fer7, docs/lstm.md) reads the same normalised landmarks plus MediaPipe's 52
blendshapes, z-scored per feature, and was distilled from the pixel teacher: on FER2013 it is
about ten points more accurate than the encoder's linear probe. Its 256-d hidden layer (the
input of its classifier head) goes to the projector beside the encoder feature, so the LLM
inherits the better features and the teacher's distillation. Still numbers only: landmarks and
blendshapes in, no pixels.

    expr = ExpressionEncoder("models/facephi/expression")
    z = expr.encode_normalized(norm_landmarks, blendshapes)   # (N, 478, 3), (N, 52) -> (N, 256)

The FacePhi model folder holds its own copy (`expression/`), so retraining the emotion models
never changes what a trained projector reads. ROS-free.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.sequences import assemble, mirror_normalized
from ..models.lstm import EmotionLSTM, ModelFileError, load_model

BATCH = 2048


class ExpressionEncoder:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.model, self.meta = load_model(self.folder)
        if self.model.cfg.temporal:
            raise ModelFileError(f"FacePhi expression model {self.folder} is temporal: it must be a per-frame model "
                                 "(train_lstm --per-frame)")
        if not isinstance(self.model, EmotionLSTM):
            raise ModelFileError(f"FacePhi expression model {self.folder} is an ensemble: it must be one per-frame model")
        fc = self.model.cfg.feature_config
        if not (fc.landmarks and fc.blendshapes and fc.landmark_dims == 3 and not fc.landmark_subset):
            raise ModelFileError(f"FacePhi expression model {self.folder} must read all 478 landmarks (x, y, z) "
                                 f"and the blendshapes; it reads {fc.to_dict()}")
        self.dim = self.model.cfg.hidden
        self.classes = list(self.model.cfg.classes)

    @torch.no_grad()
    def encode_normalized(self, norm_landmarks, blendshapes, mirror: bool = False) -> torch.Tensor:
        """(N, 478, 3) pose-free normalised landmarks and (N, 52) blendshapes -> (N, dim) float32
        embeddings; mirror=True embeds the mirror image of each face."""
        lm = torch.as_tensor(np.asarray(norm_landmarks, np.float32)) if not torch.is_tensor(norm_landmarks) else norm_landmarks.float()
        bs = torch.as_tensor(np.asarray(blendshapes, np.float32)) if not torch.is_tensor(blendshapes) else blendshapes.float()
        if lm.shape[0] != bs.shape[0] or bs.shape[-1] != 52:
            raise ValueError(f"expression input: {tuple(lm.shape)} landmarks with {tuple(bs.shape)} blendshapes")
        if mirror:
            lm, bs = mirror_normalized(lm, bs)
        out = [self.model.encode(assemble(lm[i:i + BATCH], bs[i:i + BATCH])) for i in range(0, len(lm), BATCH)]
        return torch.cat(out) if out else torch.zeros(0, self.dim)
