"""The dataset builder (real MediaPipe on real FER2013 images, original and extra views) and the
camera-like training sequences drawn from those views."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import need
from facephi_ros.data.feature_files import load_split
from facephi_ros.data.image_folder import EXTRA_VIEWS, View, load_for_landmarker
from facephi_ros.data.sequences import SequenceAugment, make_sequences

FER_CLASSES = ("happy", "surprise")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """root/test/<class>/*.jpg with 4 real FER2013 test images per class (copied to a temp dir)."""
    from conftest import DATA

    src = need(DATA / "fer2013" / "test")
    root = tmp_path_factory.mktemp("fer_tiny")
    for c in FER_CLASSES:
        (root / "test" / c).mkdir(parents=True)
        for f in sorted((src / c).glob("*.jpg"))[:4]:
            shutil.copy(f, root / "test" / c / f.name)
    return root


@pytest.fixture(scope="module")
def built(tiny_folder, tmp_path_factory):
    from training.build_dataset import main

    out = tmp_path_factory.mktemp("features")
    assert main(["--root", str(tiny_folder), "--splits", "test", "--out", str(out), "--views", "--workers", "2"]) == 0
    return out


def test_views_render_the_image(tiny_folder):
    path = str(sorted((tiny_folder / "test" / "happy").glob("*.jpg"))[0])
    plain = load_for_landmarker(path)
    assert plain.shape == (216, 216, 3)  # 48 -> 144 + a quarter of black on every side
    mirrored = load_for_landmarker(path, view=View("m", flip=True)).astype(int)
    assert np.abs(mirrored - plain[:, ::-1]).mean() < 0.5  # flipped before the bicubic upscale
    assert np.abs(mirrored - plain).mean() > 5
    zoom = load_for_landmarker(path, view=View("z", upscale=160, pad_fraction=0.2))
    assert zoom.shape == (224, 224, 3)
    rolled = load_for_landmarker(path, view=View("r", rotate_deg=6.0))
    assert rolled.shape == plain.shape and not np.array_equal(rolled, plain)
    assert rolled[0, 0].sum() == 0  # black corners, like the padding


def test_builder_writes_original_and_views(built):
    d = np.load(built / "test.npz")
    prov = json.loads(str(d["provenance"]))
    assert prov["images"] == 8 and prov["counts"] == {"happy": 4, "surprise": 4}
    assert d["landmarks"].shape == (8, 478, 3) and d["blendshapes"].shape == (8, 52)
    # the landmarker alone, timed in the same run, bounds the builder's speed
    assert 3 < prov["landmarker_ms_per_image"] < 200
    assert 0 < prov["fraction_of_landmarker_bound"] < 1
    v = np.load(built / "test_views.npz")
    assert v["landmarks"].shape == (8, len(EXTRA_VIEWS), 478, 3) and v["found"].shape == (8, len(EXTRA_VIEWS))
    vprov = json.loads(str(v["provenance"]))
    assert [x["name"] for x in vprov["views"]] == [x.name for x in EXTRA_VIEWS]
    assert v["found"].mean() > 0.7 and d["found"].mean() > 0.7


def test_mirrored_views_describe_the_original_face(built):
    """A mirrored rendering is mirrored back: its normalised face matches the original's far
    better than the same landmarks left mirrored; it is still a separate landmarker pass."""
    s = load_split(built, "test", views=True)
    assert s.view_landmarks.shape == (8, 1 + len(EXTRA_VIEWS), 478, 3)
    k = 1 + [x.name for x in EXTRA_VIEWS].index("mirror")
    both = s.view_found[:, 0] & s.view_found[:, k]
    assert both.sum() >= 4
    orig, back = s.view_landmarks[both, 0], s.view_landmarks[both, k]
    left_mirrored = back.copy()
    left_mirrored[..., 0] *= -1
    close = np.abs(orig - back).mean()
    assert close < 0.5 * np.abs(orig - left_mirrored).mean()
    assert 0 < close < 0.05
    assert np.array_equal(s.found_any, s.view_found.any(1))


def test_camera_views_resample_the_face_and_follow_the_views(tiny_folder, built):
    """A camera view redraws the 48 px image at its own width, a fraction of a pixel off the
    source grid, before the usual upscale; build_dataset --camera-views writes them beside the
    views and load_split(camera_views=True) puts them after the views, which stay where they were."""
    import cv2

    from facephi_ros.data.image_folder import CAMERA_VIEWS, camera_resample
    from training.build_dataset import main

    path = str(sorted((tiny_folder / "test" / "happy").glob("*.jpg"))[0])
    g = np.repeat(cv2.imread(path, cv2.IMREAD_GRAYSCALE)[:, :, None], 3, 2)
    moved = camera_resample(g, 56, 0.4)
    assert moved.shape == (56, 56, 3)
    still = camera_resample(g, 56, 0.0)
    assert 0.5 < np.abs(moved.astype(int) - still).mean() < 10  # softer and off the grid, same face
    plain = load_for_landmarker(path)
    cam = load_for_landmarker(path, view=CAMERA_VIEWS[0])
    assert cam.shape == plain.shape and 1 < np.abs(cam.astype(int) - plain).mean() < 20
    assert main(["--root", str(tiny_folder), "--splits", "test", "--out", str(built), "--camera-views", "--workers", "1"]) == 0
    c = np.load(built / "test_camera_views.npz")
    assert c["found"].shape == (8, len(CAMERA_VIEWS)) and c["found"].mean() > 0.7
    base = load_split(built, "test", views=True)
    both = load_split(built, "test", views=True, camera_views=True)
    n = 1 + len(EXTRA_VIEWS)
    assert both.view_landmarks.shape == (8, n + len(CAMERA_VIEWS), 478, 3)
    assert np.array_equal(both.view_landmarks[:, :n], base.view_landmarks)
    assert np.array_equal(both.view_found[:, n:], c["found"])
    # a mirrored camera view is mirrored back like the mirrored views
    k = n + [v.name for v in CAMERA_VIEWS].index("mirror-camera-42")
    ok = both.view_found[:, 0] & both.view_found[:, k]
    assert ok.sum() >= 4 and np.abs(both.view_landmarks[ok, 0] - both.view_landmarks[ok, k]).mean() < 0.05


def test_views_must_list_the_same_images(built, tmp_path):
    shutil.copy(built / "test.npz", tmp_path / "test.npz")
    v = dict(np.load(built / "test_views.npz"))
    v["paths"] = v["paths"][::-1]
    np.savez(tmp_path / "test_views.npz", **v)
    with pytest.raises(ValueError, match="same images"):
        load_split(tmp_path, "test", views=True)


def test_sequence_frames_come_from_found_views_only():
    """Without simulated noise every frame is exactly one of the image's found views, and views
    without a face (filled with a sentinel here) never appear."""
    N, V, T = 6, 4, 12
    gen = torch.Generator().manual_seed(0)
    lm = torch.randn(N, V, 478, 3)
    lm = lm - lm.mean(-2, keepdim=True)
    lm = lm / lm.pow(2).sum(-1).mean(-1).sqrt()[..., None, None]
    bs = torch.rand(N, V, 52)
    found = torch.ones(N, V, dtype=torch.bool)
    found[:, 2] = False
    bs[:, 2] = 7.0  # would show up in the blendshape features if used
    quiet = SequenceAugment(p_transition=0.0, rot_offset_deg=0.0, rot_jitter_deg=0.0, scale_jitter=0.0,
                            landmark_noise=(0.0, 0.0), blendshape_noise=0.0, p_hold=0.0, p_mirror=0.0)
    idx = torch.arange(N)
    x, y = make_sequences(lm, bs, torch.zeros(N, dtype=torch.long), idx, idx, T, quiet, gen, view_found=found)
    assert x.shape == (N, T, 52 + 478 * 3)
    frames_bs = x[..., :52]
    seen = set()
    for i in range(N):
        for t in range(T):
            match = [v for v in range(V) if torch.allclose(frames_bs[i, t], bs[i, v])]
            assert match and 2 not in match
            seen.add(match[0])
    assert seen == {0, 1, 3}  # every found view is used


def test_facephi_training_inputs_pool_found_renderings_only():
    """Stage 1-2 inputs: per face one side (original or mirrored) and the mean of a non-empty
    subset of the renderings in which the face was found, never a missing one."""
    from training.train_facephi import sample_features
    n, v = 5, 6
    feats = torch.eye(v).expand(n, v, v).clone()  # rendering k's feature = one-hot k
    mirror = -feats
    found = torch.rand(n, v, generator=torch.Generator().manual_seed(1)) < 0.6
    found[:, 2] = True
    found[0] = False
    found[0, 4] = True  # face 0: one rendering only
    idx = torch.arange(n).repeat(200)
    x = sample_features(feats, mirror, found, idx, torch.Generator().manual_seed(0))
    assert x.shape == (len(idx), v)
    side = x.sum(1)
    assert torch.allclose(side.abs(), torch.ones(len(idx)))  # a mean, from one side only
    assert 0.35 < (side > 0).float().mean() < 0.65  # both sides drawn
    used = x.abs() > 1e-6
    assert not (used & ~found[idx]).any()  # never a rendering without a face
    assert torch.allclose(x[idx == 0].abs(), torch.eye(v)[4])
    sizes = used[idx == 1].sum(1)
    assert sizes.min() == 1 and sizes.max() == int(found[1].sum())  # from one rendering up to all found ones


def test_sequence_jitter_goes_through_the_nodes_alignment(built):
    """A rotation left in a normalised face is removed by the node's rigid alignment: a sequence
    frame with rotation jitter only equals what the node computes for it (numpy refinement)."""
    from facephi_ros.data.sequences import random_rotation, realign
    from facephi_ros.features.normalize import _unit_rms, canonical_face, rigid_alignment

    d = load_split(built, "test")
    lm = d.norm_landmarks[d.found].astype(np.float64)
    assert len(lm) >= 2
    rot = lm @ np.swapaxes(random_rotation(len(lm), 6.0, torch.Generator().manual_seed(0)).numpy(), -1, -2)
    node = _unit_rms(rot @ rigid_alignment(rot, canonical_face()))
    out = realign(torch.from_numpy(rot).float()).numpy()
    assert np.abs(out - node).max() < 1e-4
    assert np.abs(out - lm).max() < 1e-4 < np.abs(rot - lm).max()  # the rotation is gone again
    aug = SequenceAugment(p_transition=0, rot_offset_deg=6.0, rot_jitter_deg=3.0, scale_jitter=0.0, landmark_noise=(0, 0),
                          blendshape_noise=0.0, p_hold=0.0, p_mirror=0.0)
    idx = torch.arange(len(lm))
    x, _ = make_sequences(torch.from_numpy(d.norm_landmarks[d.found]), torch.from_numpy(d.blendshapes[d.found]),
                          torch.zeros(len(lm), dtype=torch.long), idx, idx, 4, aug, torch.Generator().manual_seed(1))
    frames = x[..., 52:].reshape(len(lm), 4, 478, 3).numpy()
    assert np.abs(frames - lm[:, None]).max() < 1e-4  # pose jitter alone leaves the features as they were


def test_two_seeds_train_apart_and_join_into_an_ensemble(built, tmp_path):
    """train_lstm --seed trains another member (the hold-out stays the config's); ensemble_lstm
    joins members into one folder that loads as an ensemble giving their mean probability."""
    import yaml

    from facephi_ros.models.lstm import EmotionEnsemble, load_model
    from training.ensemble_lstm import main as join
    from training.train_lstm import main as train
    from training.train_lstm import stream_probs

    feats = tmp_path / "features"
    feats.mkdir()
    for name in ("", "_views"):  # the tiny test split stands in for a training split
        shutil.copy(built / f"test{name}.npz", feats / f"train{name}.npz")
    cfg = yaml.safe_load(open("training/configs/lstm_fer7.yaml"))
    cfg.update(features_dir=str(feats), classes=list(FER_CLASSES), distill=None,
               model={**cfg["model"], "hidden": 8, "encoder_hidden": 16})
    cfg["train"].update(epochs=2, batch_size=4, val_fraction=0.5, init_from=None)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    for seed in (0, 1):
        assert train(["--config", str(config), "--per-frame", "--seed", str(seed), "--threads", "1",
                      "--out", str(tmp_path / f"m{seed}")]) == 0
    m0, m1 = (load_model(tmp_path / f"m{s}")[0] for s in (0, 1))
    assert not torch.equal(m0.head[-1].weight, m1.head[-1].weight)  # another seed, another model
    metrics = [json.loads((tmp_path / f"m{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert metrics[0]["val_faces"] >= 1
    assert metrics[0]["val_images_sha256"] == metrics[1]["val_images_sha256"]  # the same validation faces
    assert join(["--config", str(config), "--members", str(tmp_path / "m0"), str(tmp_path / "m1"),
                 "--out", str(tmp_path / "ens"), "--threads", "1"]) == 0
    with pytest.raises(SystemExit, match="ensemble"):  # an ensemble is no starting point: one line
        train(["--config", str(config), "--init-from", str(tmp_path / "ens"), "--out", str(tmp_path / "x")])
    other = {**cfg, "train": {**cfg["train"], "val_fraction": 0.25}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(SystemExit, match="another validation hold-out"):  # members must not have trained on it
        join(["--config", str(tmp_path / "other.yaml"), "--members", str(tmp_path / "m0"), str(tmp_path / "m1"),
              "--out", str(tmp_path / "bad")])
    ens, meta = load_model(tmp_path / "ens")
    assert isinstance(ens, EmotionEnsemble) and meta["members"] == 2
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert set(metrics["val"]) == {str(tmp_path / "m0"), str(tmp_path / "m1"), "ensemble", "ensemble_as_stored"}
    d = load_split(feats, "train", list(FER_CLASSES))
    lm, bs = torch.from_numpy(d.norm_landmarks[d.found]), torch.from_numpy(d.blendshapes[d.found])
    p = [stream_probs(m, lm, bs, 1) for m in (m0, m1, ens)]
    assert np.allclose(p[2], (p[0] + p[1]) / 2, atol=2e-3)  # float16 storage: close, not exact
    cfg3 = {**cfg, "classes": ["happy", "sad", "surprise"]}
    (tmp_path / "cfg3.yaml").write_text(yaml.safe_dump(cfg3))
    with pytest.raises(SystemExit, match="has classes"):  # members trained for other classes: one line
        join(["--config", str(tmp_path / "cfg3.yaml"), "--members", str(tmp_path / "m0"), str(tmp_path / "m1"),
              "--out", str(tmp_path / "bad")])
