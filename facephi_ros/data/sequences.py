"""Camera-like training sequences from still images (torch, batched).

A still image has no time axis. A live camera watching one face gives frames that differ by
small head movements (pose estimated imperfectly), landmark jitter, blendshape noise, frames
that repeat when the camera or detector hiccups, and now and then a change of expression. This
module makes such sequences from per-image features:

* each sequence shows image A, mirrored or not, for its whole length, or switches to image B
  of another class at a random time through a short morph (landmarks and blendshapes blended
  over 0-6 frames); the per-frame label is the expression currently shown (A's until the blend
  passes half-way, then B's);
* every frame gets a residual head rotation (a per-sequence offset plus per-frame jitter: the
  transformation matrix never removes pose exactly), a scale change, Gaussian landmark noise
  and blendshape noise; the landmarks then go through the node's last normalisation steps
  (`realign`: the rigid alignment of the 27 rigid landmarks to the canonical face and unit
  RMS), so a frame looks as the node's features of such a camera frame would: a head rotation
  that the matrix left is removed again by the alignment, as the node removes it, and what
  remains is its effect on the non-rigid shape and the noise;
* with probability `p_hold` a frame repeats the previous one (a dropped frame).

With several views per image (lm of shape (N, V, 478, 3), from build_dataset --views), each frame
shows a random view in which a face was found: real landmarker differences between frames, on top
of the simulated ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..features.normalize import BLENDSHAPE_MIRROR, canonical_face, landmark_mirror, rigid_alignment


@dataclass
class SequenceAugment:
    p_transition: float = 0.5
    max_morph: int = 6
    rot_offset_deg: float = 4.0
    rot_jitter_deg: float = 1.5
    scale_jitter: float = 0.05
    landmark_noise: tuple = (0.002, 0.012)
    blendshape_noise: float = 0.03
    p_hold: float = 0.08
    p_mirror: float = 0.5
    # hybrid model: share of sequences whose appearance vectors are all zero (modality dropout:
    # the model must also read the landmarks, not lean on the teacher's vector alone)
    p_drop_appearance: float = 0.0


def mirror_normalized_landmarks(lm: torch.Tensor) -> torch.Tensor:
    """Mirror pose-free normalised landmarks (..., 478, 3): x -> -x, partner indices."""
    out = lm[..., torch.as_tensor(landmark_mirror()), :].clone()
    out[..., 0] = -out[..., 0]
    return out


def mirror_normalized(lm: torch.Tensor, bs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror pose-free normalised landmarks and blendshapes."""
    return mirror_normalized_landmarks(lm), bs[..., torch.as_tensor(BLENDSHAPE_MIRROR)]


def random_rotation(n: int, sigma_deg: torch.Tensor | float, gen: torch.Generator | None = None) -> torch.Tensor:
    """(n, 3, 3) rotations from small random yaw/pitch/roll angles (std sigma_deg each)."""
    ang = torch.randn(n, 3, generator=gen) * (torch.as_tensor(sigma_deg) * math.pi / 180)
    c, s = torch.cos(ang), torch.sin(ang)
    one, zero = torch.ones(n), torch.zeros(n)
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], -1).view(n, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], -1).view(n, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], -1).view(n, 3, 3)
    return rz @ ry @ rx


def renormalize(lm: torch.Tensor) -> torch.Tensor:
    lm = lm - lm.mean(dim=-2, keepdim=True)
    rms = lm.pow(2).sum(-1).mean(-1).sqrt()[..., None, None]
    return lm / rms.clamp_min(1e-9)


def realign(lm: torch.Tensor) -> torch.Tensor:
    """(..., 478, 3) -> rigidly aligned to the canonical face on the rigid landmarks, centred,
    unit RMS: the node's own refinement (facephi_ros.features.normalize.rigid_alignment)."""
    lm = lm - lm.mean(dim=-2, keepdim=True)
    rot = rigid_alignment(lm.double().numpy(), canonical_face())
    return renormalize(lm @ torch.from_numpy(rot).to(lm.dtype))


def make_sequences(lm: torch.Tensor, bs: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor,
                   partners: torch.Tensor, T: int, aug: SequenceAugment, gen: torch.Generator | None = None,
                   landmark_index: torch.Tensor | None = None, landmark_dims: int = 3, use_landmarks: bool = True,
                   use_blendshapes: bool = True, view_found: torch.Tensor | None = None,
                   appearance: torch.Tensor | None = None):
    """Features (B, T, D) and per-frame labels (B, T) for anchor images `anchors` that may switch
    to `partners`. lm: (N, 478, 3) normalised landmarks, bs: (N, 52), labels: (N,); or with views
    lm (N, V, 478, 3), bs (N, V, 52) and view_found (N, V) (all views usable when None).
    appearance (views only): (N, V, A) appearance vectors of each rendering (the hybrid model's),
    appended to each frame's features; a frame's vector is its rendering's own, blended like the
    blendshapes during a transition."""
    B = anchors.numel()
    if appearance is not None and (lm.dim() != 4 or aug.p_mirror > 0):
        raise ValueError("appearance vectors come per rendering and cannot be mirrored: pass views "
                         "(lm of shape (N, V, 478, 3)) and p_mirror 0")
    if lm.dim() == 4:
        va, vb = _pick_views(view_found, lm.shape[1], anchors, T, gen), _pick_views(view_found, lm.shape[1], partners, T, gen)
        la, lb = lm[anchors[:, None], va], lm[partners[:, None], vb]  # (B, T, 478, 3)
        ba, bb = bs[anchors[:, None], va], bs[partners[:, None], vb]
        if appearance is not None:
            aa, ab = appearance[anchors[:, None], va].float(), appearance[partners[:, None], vb].float()
    else:
        la, lb = lm[anchors][:, None].expand(B, T, *lm.shape[1:]), lm[partners][:, None].expand(B, T, *lm.shape[1:])
        ba, bb = bs[anchors][:, None].expand(B, T, bs.shape[-1]), bs[partners][:, None].expand(B, T, bs.shape[-1])
    mirror = torch.rand(B, generator=gen) < aug.p_mirror
    if mirror.any():
        la, lb, ba, bb = la.clone(), lb.clone(), ba.clone(), bb.clone()
        la[mirror], ba[mirror] = mirror_normalized(la[mirror], ba[mirror])
        lb[mirror], bb[mirror] = mirror_normalized(lb[mirror], bb[mirror])
    t = torch.arange(T, dtype=torch.float32)
    trans = torch.rand(B, generator=gen) < aug.p_transition
    start = torch.randint(max(1, T // 4), max(T, 2), (B,), generator=gen).float()  # T=1: no room to switch
    morph = torch.randint(0, aug.max_morph + 1, (B,), generator=gen).float()
    alpha = ((t[None] - start[:, None] + 1) / (morph[:, None] + 1)).clamp(0, 1)
    alpha = torch.where(trans[:, None], alpha, torch.zeros_like(alpha))  # (B, T)
    y = torch.where(alpha > 0.5, labels[partners][:, None], labels[anchors][:, None])
    frames_lm = (1 - alpha)[..., None, None] * la + alpha[..., None, None] * lb  # (B, T, 478, 3)
    frames_bs = (1 - alpha)[..., None] * ba + alpha[..., None] * bb
    frames_app = (1 - alpha)[..., None] * aa + alpha[..., None] * ab if appearance is not None else None
    if frames_app is not None and aug.p_drop_appearance > 0:
        keep = torch.rand(B, generator=gen) >= aug.p_drop_appearance
        frames_app = frames_app * keep[:, None, None]
    # residual pose: per-sequence offset + per-frame jitter
    r_off = random_rotation(B, aug.rot_offset_deg, gen)
    r_jit = random_rotation(B * T, aug.rot_jitter_deg, gen).view(B, T, 3, 3)
    rot = r_off[:, None] @ r_jit
    scale = 1 + aug.scale_jitter * torch.randn(B, T, 1, 1, generator=gen)
    lo, hi = aug.landmark_noise
    sigma = lo + (hi - lo) * torch.rand(B, 1, 1, 1, generator=gen)
    frames_lm = (frames_lm @ rot.transpose(-1, -2)) * scale + sigma * torch.randn(frames_lm.shape, generator=gen)
    frames_lm = realign(frames_lm)  # as the node's features would show the jittered frame
    frames_bs = (frames_bs + aug.blendshape_noise * torch.randn(frames_bs.shape, generator=gen)).clamp(0, 1)
    # held (dropped) frames repeat the previous frame
    hold = torch.rand(B, T, generator=gen) < aug.p_hold
    hold[:, 0] = False
    if hold.any():
        idx = torch.arange(T).expand(B, T).clone()
        idx[hold] = 0
        idx = torch.cummax(idx, dim=1).values
        frames_lm = torch.gather(frames_lm, 1, idx[..., None, None].expand_as(frames_lm))
        frames_bs = torch.gather(frames_bs, 1, idx[..., None].expand_as(frames_bs))
        if frames_app is not None:
            frames_app = torch.gather(frames_app, 1, idx[..., None].expand_as(frames_app))
        y = torch.gather(y, 1, idx)
    x = assemble(frames_lm, frames_bs, landmark_index, landmark_dims, use_landmarks, use_blendshapes)
    return (x if frames_app is None else torch.cat([x, frames_app], -1)), y


def pick_found_views(found: torch.Tensor, gen) -> torch.Tensor:
    """(...,) a random view index per row of `found` (..., V) among the views where it is True."""
    return torch.rand(found.shape, generator=gen).masked_fill(~found, -1.0).argmax(-1)


def mean_over_found(x: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """(..., D) mean of x (..., V, D) over the views where found (..., V) is True (zeros where none is)."""
    w = found.to(x.dtype)[..., None]
    return (x * w).sum(-2) / w.sum(-2).clamp_min(1)


def _pick_views(view_found: torch.Tensor | None, V: int, images: torch.Tensor, T: int, gen) -> torch.Tensor:
    """(B, T) a random view per frame among those in which the image's face was found."""
    if view_found is None:
        return torch.rand(images.numel(), T, V, generator=gen).argmax(-1)
    return pick_found_views(view_found[images][:, None, :].expand(-1, T, -1), gen)


def assemble(lm: torch.Tensor, bs: torch.Tensor, landmark_index=None, landmark_dims: int = 3,
             use_landmarks: bool = True, use_blendshapes: bool = True) -> torch.Tensor:
    """The feature vector of facephi_ros.features.frame_features, from torch tensors."""
    parts = []
    if use_blendshapes:
        parts.append(bs)
    if use_landmarks:
        if landmark_index is not None:
            lm = lm[..., landmark_index, :]
        lm = lm[..., :landmark_dims]
        parts.append(lm.reshape(*lm.shape[:-2], -1))
    return torch.cat(parts, -1)
