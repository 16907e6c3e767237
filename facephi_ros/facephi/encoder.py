"""The landmark encoder: PointMLP over the normalised landmarks, plus the projection into the
text-embedding space used by the contrastive alignment (ULIP/CLIP style).

Input scaling: the feature module's normalised landmarks (pose-free, centred, unit RMS radius;
the canonical face spans at most 1.57 on any axis) are divided by POINT_SCALE = 1.8 and clipped,
so that every coordinate lies in [-1, 1] with room for an open jaw or raised brows.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .files import load_into, load_part, save_part
from .pointmlp import PointMLP, PointMLPConfig
from ..models.lstm import ModelFileError

POINT_SCALE = 1.8
REBUILD = "python -m training.align_encoder"


def to_points(norm_landmarks) -> torch.Tensor:
    """(..., 478, 3) normalised landmarks -> float32 tensor in [-1, 1]."""
    x = torch.as_tensor(np.asarray(norm_landmarks, np.float32) if not torch.is_tensor(norm_landmarks) else norm_landmarks)
    return (x.float() / POINT_SCALE).clamp(-1.0, 1.0)


class AlignedEncoder(nn.Module):
    def __init__(self, cfg: PointMLPConfig | None = None, text_dim: int = 384, classes: list[str] | None = None):
        super().__init__()
        self.backbone = PointMLP(cfg)
        self.to_text = nn.Linear(self.backbone.cfg.out_dim, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        self.classes = list(classes or [])
        self.register_buffer("class_text", torch.zeros(len(self.classes), text_dim))  # zero-shot prototypes

    @property
    def out_dim(self) -> int:
        return self.backbone.cfg.out_dim

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """The 256-d global feature the projector reads."""
        return self.backbone(points)

    @torch.no_grad()
    def encode(self, norm_landmarks, batch: int = 256, desc: str = "") -> torch.Tensor:
        """Features of many normalised faces (N, 478, 3), in eval mode, batched (tqdm when desc)."""
        from tqdm import tqdm

        self.eval()
        dev = next(self.parameters()).device
        starts = range(0, len(norm_landmarks), batch)
        out = [self(to_points(norm_landmarks[i:i + batch]).to(dev)) for i in (tqdm(starts, desc=desc, leave=False) if desc else starts)]
        return torch.cat(out) if out else torch.zeros(0, self.out_dim, device=dev)

    def embed(self, feat: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.to_text(feat), dim=-1)

    def zero_shot(self, points: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the nearest class sentence (cosine, learned temperature)."""
        sims = self.embed(self(points)) @ self.class_text.T
        return (sims * self.logit_scale.exp()).softmax(-1)


def save_encoder(enc: AlignedEncoder, folder: str | Path, extra: dict | None = None) -> Path:
    meta = {"arch": "PointMLP", "config": enc.backbone.cfg.to_dict(), "text_dim": enc.to_text.out_features,
            "classes": enc.classes, "point_scale": POINT_SCALE, **(extra or {})}
    return save_part(folder, enc.state_dict(), meta)


def load_encoder(folder: str | Path) -> tuple[AlignedEncoder, dict]:
    state, meta = load_part(folder, "FacePhi encoder", REBUILD)
    try:
        enc = AlignedEncoder(PointMLPConfig.from_dict(meta["config"]), meta["text_dim"], meta["classes"])
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"FacePhi encoder metadata in {folder} is incomplete ({type(e).__name__}: {e})") from None
    if abs(float(meta.get("point_scale", POINT_SCALE)) - POINT_SCALE) > 1e-9:
        raise ModelFileError(f"FacePhi encoder in {folder} was trained with point scale {meta['point_scale']}, "
                             f"this code uses {POINT_SCALE}: retrain with `{REBUILD}`")
    load_into(enc, state, "FacePhi encoder", folder)
    return enc.eval(), meta
