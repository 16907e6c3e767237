"""PointMLP (Ma et al., ICLR 2022) over the 478 face landmarks, pure PyTorch.

The variant ULIP uses as its 3-D backbone: residual point MLP stages, each a local grouper
(farthest-point sampling, k nearest neighbours, geometric affine normalisation) followed by a
pre-extraction block on every group (max-pooled over the neighbours) and a pos-extraction block on
the sampled points; the global max-pooled feature goes through ULIP's 2-layer head to a 256-d
global feature. Farthest-point sampling and the neighbour search are written in torch (no CUDA
extension), so the same code runs on a CPU robot and on a GPU.

Stage configuration for 478 points (ULIP's ModelNet setting is 1024 points, embed 64, 4 stages of
2+2 blocks with 24 neighbours): a face has fewer points, and a CPU must train it, so the default
halves the points per stage (478 -> 240 -> 120 -> 60 -> 30), uses 16 neighbours (a landmark's
ring of neighbours on the mesh is 6-8 points; 16 covers the next ring), one block before and
one after each grouping, and embed 32 doubling to 256 channels. `PointMLPConfig` holds all of it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


POINT_FEATURES = {"xyz": 3, "xyz+offset": 6}  # per-point input channels


@dataclass
class PointMLPConfig:
    num_points: int = 478
    embed_dim: int = 32
    stage_points: list[int] = field(default_factory=lambda: [240, 120, 60, 30])
    k_neighbors: list[int] = field(default_factory=lambda: [16, 16, 16, 16])
    dim_expansion: list[int] = field(default_factory=lambda: [2, 2, 2, 1])
    pre_blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    pos_blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    res_expansion: float = 1.0
    head_hidden: int = 512
    out_dim: int = 256
    dropout: float = 0.5
    # per-point input: "xyz" (the coordinates), or "xyz+offset": also each landmark's offset from its
    # place on the canonical face, so the embedding knows which landmark a point is and how it moved
    point_features: str = "xyz"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PointMLPConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def farthest_point_sample(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N, 3) -> (B, n) indices; starts at point 0 like the reference CUDA kernel."""
    b, npts, _ = xyz.shape
    idx = torch.zeros(b, n, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, npts), float("inf"), device=xyz.device, dtype=xyz.dtype)
    far = torch.zeros(b, dtype=torch.long, device=xyz.device)
    ar = torch.arange(b, device=xyz.device)
    for i in range(n):
        idx[:, i] = far
        d = ((xyz - xyz[ar, far].unsqueeze(1)) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(-1)
    return idx


def gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (B, N, C), idx (B, ...) -> (B, ..., C)."""
    b = points.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])


def knn(query: torch.Tensor, xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, S, k) of the k nearest points of xyz (B, N, 3) to each query (B, S, 3)."""
    return torch.cdist(query, xyz).topk(k, dim=-1, largest=False).indices


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, relu: bool = True):
        layers = [nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, c: int, expansion: float):
        super().__init__()
        h = max(1, int(c * expansion))
        self.net = nn.Sequential(ConvBNReLU(c, h), ConvBNReLU(h, c, relu=False))

    def forward(self, x):
        return F.relu(self.net(x) + x)


class LocalGrouper(nn.Module):
    """FPS anchors, kNN groups, geometric affine ('anchor' normalisation), anchor features appended."""

    def __init__(self, channels: int, n: int, k: int):
        super().__init__()
        self.n, self.k = n, k
        self.alpha = nn.Parameter(torch.ones(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor):
        b = xyz.shape[0]
        fps = farthest_point_sample(xyz, self.n)
        new_xyz, new_feats = gather(xyz, fps), gather(feats, fps)
        grouped = gather(feats, knn(new_xyz, xyz, self.k))  # (B, n, k, C)
        rel = grouped - new_feats.unsqueeze(2)
        std = rel.reshape(b, -1).std(dim=-1, keepdim=True).clamp_min(1e-5).view(b, 1, 1, 1)
        rel = self.alpha * (rel / std) + self.beta
        out = torch.cat([rel, new_feats.unsqueeze(2).expand(-1, -1, self.k, -1)], dim=-1)
        return new_xyz, out  # (B, n, 3), (B, n, k, 2C)


class PreExtraction(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, expansion: float):
        super().__init__()
        self.transfer = ConvBNReLU(cin, cout)
        self.blocks = nn.Sequential(*[ResBlock(cout, expansion) for _ in range(blocks)])

    def forward(self, x):  # (B, n, k, C)
        b, n, k, c = x.shape
        x = x.permute(0, 1, 3, 2).reshape(b * n, c, k)
        x = self.blocks(self.transfer(x))
        x = x.amax(dim=-1)  # max over the neighbours
        return x.reshape(b, n, -1).permute(0, 2, 1)  # (B, C', n)


class PointMLP(nn.Module):
    """(B, 478, 3) landmarks in [-1, 1] -> (B, 256) global feature."""

    def __init__(self, cfg: PointMLPConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PointMLPConfig()
        if cfg.point_features not in POINT_FEATURES:
            raise ValueError(f"point_features must be one of {sorted(POINT_FEATURES)}, got {cfg.point_features!r}")
        self.embedding = ConvBNReLU(POINT_FEATURES[cfg.point_features], cfg.embed_dim)
        if cfg.point_features == "xyz+offset":
            from ..features.normalize import canonical_face
            from .encoder import to_points
            self.register_buffer("canonical", to_points(canonical_face()), persistent=False)
        self.groupers, self.pre, self.pos = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = cfg.embed_dim
        for n, k, e, pre, pos in zip(cfg.stage_points, cfg.k_neighbors, cfg.dim_expansion, cfg.pre_blocks, cfg.pos_blocks):
            out = c * e
            self.groupers.append(LocalGrouper(c, n, k))
            self.pre.append(PreExtraction(2 * c, out, pre, cfg.res_expansion))
            self.pos.append(nn.Sequential(*[ResBlock(out, cfg.res_expansion) for _ in range(pos)]))
            c = out
        self.head = nn.Sequential(
            nn.Linear(c, cfg.head_hidden, bias=False), nn.BatchNorm1d(cfg.head_hidden), nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout), nn.Linear(cfg.head_hidden, cfg.out_dim, bias=False), nn.BatchNorm1d(cfg.out_dim),
        )

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        if xyz.ndim != 3 or xyz.shape[1:] != (self.cfg.num_points, 3):
            raise ValueError(f"PointMLP expects (B, {self.cfg.num_points}, 3) points, got {tuple(xyz.shape)}")
        x = xyz if self.cfg.point_features == "xyz" else torch.cat([xyz, xyz - self.canonical], -1)
        feats = self.embedding(x.transpose(1, 2)).transpose(1, 2)  # (B, N, C)
        for grouper, pre, pos in zip(self.groupers, self.pre, self.pos):
            xyz, grouped = grouper(xyz, feats)
            feats = pos(pre(grouped)).transpose(1, 2)
        return self.head(feats.amax(dim=1))
