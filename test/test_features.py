"""The shared feature module: invariance to position, scale and head rotation; mirroring."""
from __future__ import annotations

import numpy as np
import pytest

from facephi_ros.features.normalize import (
    BLENDSHAPE_MIRROR,
    FeatureConfig,
    frame_features,
    landmark_mirror,
    mirror_face,
    normalize_landmarks,
    pose_angles,
)
from facephi_ros.landmarks.landmarker import BLENDSHAPE_NAMES, Landmarker


@pytest.fixture(scope="module")
def real_faces(faces_dir):
    import cv2

    out = {}
    with Landmarker(video=False, num_faces=1) as lm:
        for name in ("single_face.jpg", "0-f15-hao-ph.jpg", "0-f1-su-ph.jpg"):
            rgb = cv2.cvtColor(cv2.imread(str(faces_dir / name)), cv2.COLOR_BGR2RGB)
            f = lm.detect(rgb)[0]
            flipped = lm.detect(np.ascontiguousarray(rgb[:, ::-1]))[0]
            # the same face moved and shrunk inside a bigger canvas
            canvas = np.full((rgb.shape[0] * 2, rgb.shape[1] * 2, 3), 90, np.uint8)
            small = cv2.resize(rgb, (rgb.shape[1] * 3 // 4, rgb.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
            canvas[40:40 + small.shape[0], 300:300 + small.shape[1]] = small
            moved = lm.detect(canvas)[0]
            out[name] = (rgb.shape, f, flipped, canvas.shape, moved)
    return out


def test_position_and_scale_do_not_matter(real_faces):
    for name, (shape, f, _, cshape, moved) in real_faces.items():
        a = normalize_landmarks(f.landmarks, f.matrix, shape[1], shape[0])
        b = normalize_landmarks(moved.landmarks, moved.matrix, cshape[1], cshape[0])
        raw = np.abs(f.landmarks - moved.landmarks).mean()
        # raw coordinates differ a lot; features differ far less than two different people do (0.017-0.057)
        assert np.abs(a - b).mean() < 0.012 and raw > 0.1, (name, np.abs(a - b).mean(), raw)


def test_head_rotation_is_removed(real_faces):
    """A real face turned in 3-D (points and matrix turned together) gives the same features;
    without pose removal it would not."""
    from facephi_ros.features.normalize import to_camera_frame

    shape, f, *_ = real_faces["single_face.jpg"]
    w, h = shape[1], shape[0]
    base = normalize_landmarks(f.landmarks, f.matrix, w, h)
    cam = to_camera_frame(f.landmarks, w, h)
    c = cam.mean(0)
    for yaw, pitch, roll in ((25, 0, 0), (-30, 10, 0), (10, -20, 15)):
        a, b, g = np.radians([yaw, pitch, roll])
        ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
        r = rz @ ry @ rx
        turned = (cam - c) @ r.T + c
        back = np.stack([turned[:, 0] / w, -turned[:, 1] / h, -turned[:, 2] / w], -1)
        m = f.matrix.copy()
        m[:3, :3] = r @ f.matrix[:3, :3]
        np.testing.assert_allclose(normalize_landmarks(back, m, w, h), base, atol=1e-4)
        # the matrix alone removes it too (exactly, here), the refinement does not undo that
        np.testing.assert_allclose(normalize_landmarks(back, m, w, h, refine=False),
                                   normalize_landmarks(f.landmarks, f.matrix, w, h, refine=False), atol=1e-4)
        assert np.abs(normalize_landmarks(back, m, w, h, remove_pose=False) - base).mean() > 0.05
        angles = pose_angles(m)
        assert np.all(np.isfinite(angles)) and np.abs(angles).max() < 90


def test_mirror_map_is_an_involution_with_known_pairs():
    p = landmark_mirror()
    assert np.array_equal(p[p], np.arange(478))
    for a, b in ((33, 263), (61, 291), (234, 454), (468, 473)):  # eye corners, mouth corners, cheeks, irises
        assert p[a] == b and p[b] == a
    for mid in (1, 10, 152):  # nose tip, forehead, chin
        assert p[mid] == mid


def test_blendshape_mirroring_swaps_left_and_right():
    names = np.array(BLENDSHAPE_NAMES)
    swapped = names[BLENDSHAPE_MIRROR]
    assert swapped[list(names).index("mouthSmileLeft")] == "mouthSmileRight"
    assert swapped[list(names).index("eyeBlinkRight")] == "eyeBlinkLeft"
    assert swapped[list(names).index("jawOpen")] == "jawOpen"
    assert swapped[list(names).index("_neutral")] == "_neutral"


def test_mirroring_matches_a_flipped_image(real_faces):
    """mirror_face(face) is what the landmarker reports on the horizontally flipped image."""
    for name, (shape, f, flipped, _, _) in real_faces.items():
        lm, bs, mat = mirror_face(f.landmarks, f.blendshapes, f.matrix)
        w, h = shape[1], shape[0]
        assert np.abs(lm[:, :2] - flipped.landmarks[:, :2]).mean() < 0.01, name
        wrong = f.landmarks.copy()
        wrong[:, 0] = 1 - wrong[:, 0]  # flipping x without swapping partners is wrong
        assert np.abs(wrong[:, :2] - flipped.landmarks[:, :2]).mean() > 0.02
        assert np.abs(bs - flipped.blendshapes).mean() < 0.05, name
        a = normalize_landmarks(lm, mat, w, h)
        b = normalize_landmarks(flipped.landmarks, flipped.matrix, w, h)
        assert np.abs(a - b).mean() < 0.03, name


def test_feature_layout():
    cfg = FeatureConfig()
    x = frame_features(cfg, np.random.rand(2, 478, 3), np.random.rand(2, 52), np.tile(np.eye(4), (2, 1, 1)))
    assert x.shape == (2, cfg.dim) == (2, 52 + 478 * 3)
    small = FeatureConfig(blendshapes=False, landmark_dims=2, landmark_subset=[1, 2, 3])
    assert frame_features(small, np.random.rand(478, 3), np.random.rand(52), np.eye(4)).shape == (6,)
