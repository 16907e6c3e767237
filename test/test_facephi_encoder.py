"""FacePhi's landmark encoder: the pure-PyTorch point operations of PointMLP, its input options, the
point scaling and the multi-positive contrastive loss of the alignment."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from facephi_ros.facephi.encoder import POINT_SCALE, load_encoder, to_points
from facephi_ros.facephi.files import weights_key
from facephi_ros.facephi.pointmlp import PointMLP, PointMLPConfig, farthest_point_sample, knn
from facephi_ros.features.normalize import canonical_face
from facephi_ros.paths import shipped
from training.align_encoder import multi_positive_loss

SMALL = PointMLPConfig(embed_dim=8, stage_points=[64, 32], k_neighbors=[8, 8], dim_expansion=[2, 2], pre_blocks=[1, 1],
                       pos_blocks=[1, 1], res_expansion=0.25, head_hidden=32, out_dim=16)


def reference_fps(xyz: torch.Tensor, n: int) -> list[int]:
    """Farthest-point sampling written the slow, obvious way (one cloud)."""
    chosen = [0]
    while len(chosen) < n:
        d = torch.cdist(xyz, xyz[chosen]).min(1).values
        chosen.append(int(d.argmax()))
    return chosen


def test_farthest_point_sampling_matches_the_definition():
    torch.manual_seed(0)
    clouds = torch.rand(3, 60, 3)
    idx = farthest_point_sample(clouds, 12)
    assert idx.shape == (3, 12)
    for b in range(3):
        assert idx[b].tolist() == reference_fps(clouds[b], 12)
    face = to_points(canonical_face())[None]
    assert len(set(farthest_point_sample(face, 128)[0].tolist())) == 128  # distinct landmarks


def test_knn_returns_the_nearest_points_nearest_first():
    torch.manual_seed(1)
    pts, queries = torch.rand(2, 40, 3), torch.rand(2, 5, 3)
    got = knn(queries, pts, 6)
    for b in range(2):
        for s in range(5):
            d = ((pts[b] - queries[b, s]) ** 2).sum(-1)
            assert got[b, s].tolist() == sorted(range(40), key=lambda i: float(d[i]))[:6]


def test_points_are_scaled_into_the_unit_cube():
    face = torch.as_tensor(canonical_face(), dtype=torch.float32)
    p = to_points(face)
    assert torch.allclose(p, face / POINT_SCALE) and p.abs().max() <= 1.0  # the canonical face is not clipped
    assert to_points(face * 10).abs().max() == 1.0  # far-off points are clipped, not passed on


def test_pointmlp_shapes_and_input_checks():
    torch.manual_seed(2)
    m = PointMLP(SMALL).eval()
    x = to_points(canonical_face())[None].repeat(2, 1, 1)
    assert m(x).shape == (2, 16)
    with pytest.raises(ValueError, match="478"):
        m(x[:, :400])
    with pytest.raises(ValueError, match="point_features"):
        PointMLP(PointMLPConfig(point_features="xyz+rgb"))


def test_offset_features_tell_the_encoder_how_landmarks_moved():
    """With point_features xyz+offset every point also carries its offset from the canonical face:
    the canonical face itself has zero offsets, and two faces that only swap which landmark sits
    where (same point set, different identities) are told apart, as xyz alone cannot."""
    torch.manual_seed(3)
    m = PointMLP(PointMLPConfig(**{**SMALL.to_dict(), "point_features": "xyz+offset"})).eval()
    assert m.embedding[0].in_channels == 6
    face = to_points(canonical_face())[None]
    assert torch.allclose(face - m.canonical, torch.zeros_like(face))
    swapped = face.clone()
    swapped[0, [13, 14]] = face[0, [14, 13]]  # lip landmarks exchanged: same cloud, other faces
    with torch.no_grad():
        out = m(torch.cat([face, swapped]))
        assert not torch.allclose(out[0], out[1], atol=1e-5)
        plain = PointMLP(SMALL).eval()
        assert plain.embedding[0].in_channels == 3
        out = plain(torch.cat([face, swapped]))
        assert torch.allclose(out[0], out[1], atol=1e-5)


def test_shipped_encoder_loads_with_its_point_features():
    try:
        enc, meta = load_encoder(shipped("models") / "facephi" / "encoder")
    except Exception as e:  # the weights are committed; a missing file is a real failure
        pytest.fail(f"shipped encoder does not load: {e}")
    cfg = enc.backbone.cfg
    assert cfg.point_features in ("xyz", "xyz+offset") and cfg.num_points == 478 and enc.out_dim == 256
    with torch.no_grad():
        f = enc.eval()(to_points(canonical_face())[None])
    assert f.shape == (1, 256) and torch.isfinite(f).all()


def test_shipped_projector_was_trained_on_the_shipped_encoder(tmp_path):
    """The projector records the key of the encoder whose features it learnt from: replacing the
    encoder without retraining the LLM stages must show up here."""
    model = shipped("models") / "facephi"
    meta = json.loads((model / "projector" / "model.json").read_text())
    assert meta["encoder_key"] == weights_key(model / "encoder")
    other = tmp_path / "enc"
    other.mkdir()
    data = bytearray((model / "encoder" / "weights.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (other / "weights.safetensors").write_bytes(bytes(data))
    assert weights_key(other) != meta["encoder_key"]


def test_contrastive_loss_treats_same_class_pairs_as_positives():
    torch.manual_seed(4)
    faces = F.normalize(torch.randn(4, 8), dim=-1)
    texts = F.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(10.0)
    distinct = torch.tensor([0, 1, 2, 3])
    # all classes distinct: CLIP's symmetric cross-entropy on the diagonal
    logits = scale * faces @ texts.T
    clip = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))) / 2
    assert torch.allclose(multi_positive_loss(faces, texts, distinct, scale), clip)
    # faces 0 and 1 share a class: swapping their sentences changes nothing (both are positives) ...
    shared = torch.tensor([0, 0, 2, 3])
    swapped = texts[[1, 0, 2, 3]]
    assert torch.allclose(multi_positive_loss(faces, texts, shared, scale), multi_positive_loss(faces, swapped, shared, scale))
    # ... while CLIP's diagonal target would push them apart and change
    assert not torch.allclose(multi_positive_loss(faces, texts, distinct, scale), multi_positive_loss(faces, swapped, distinct, scale))
