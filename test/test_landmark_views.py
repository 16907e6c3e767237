"""Crop views (facephi_ros/landmarks/views.py): the multi-face landmarker cuts a tracked face's
crop a different way on successive frames; a mirrored crop's mesh comes back as the camera shows
the face. Real MediaPipe on the real group photo."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
from facephi_ros.landmarks.views import CROP_VIEWS, parse_views

CYCLE = ("plain", "mirror", "zoom-in", "mirror-zoom-out")


def test_crop_views_frame_the_face_as_the_training_views_do():
    """Each crop view's zoom is the dataset builder's view of the same name, measured as the share
    of the landmarker's input the face image fills (1 / (1 + 2 * padding))."""
    from facephi_ros.data.image_folder import EXTRA_VIEWS
    from facephi_ros.landmarks.landmarker import SMALL_IMAGE_PAD

    builder = {v.name: v for v in EXTRA_VIEWS}
    for name, view in CROP_VIEWS.items():
        if name == "plain":
            assert not view.flip and view.zoom == 1.0
            continue
        b = builder[name]
        assert view.flip == b.flip and b.rotate_deg == 0.0
        # a crop `zoom` times wider shows the face at 1/zoom of the plain crop's share
        assert (1 / (1 + 2 * b.pad_fraction)) / (1 / (1 + 2 * SMALL_IMAGE_PAD)) == pytest.approx(1 / view.zoom)


@pytest.mark.parametrize("bad", [[], ["plain", "roll+6"], "sideways"])
def test_unknown_or_no_views_are_refused_in_one_line(bad):
    with pytest.raises(ValueError, match="landmark_views must name one or more of"):
        parse_views(bad)
    with pytest.raises(ValueError, match="landmark_views"):
        MultiFaceConfig(views=tuple([bad] if isinstance(bad, str) else bad)).check()


def _offset(a, mesh, b, width, height) -> float:
    """Mean image distance between two sets of a face's landmarks (normalised coordinates), in
    units of the side of mesh's box."""
    d = (a[:, :2] - b[:, :2]) * [width, height]
    return float(np.linalg.norm(d, axis=1).mean() / max(mesh.bbox[2], mesh.bbox[3]))


def test_views_take_turns_and_describe_the_face_as_the_camera_shows_it(faces_dir):
    """The group photo held still for 6 frames, once with the plain view only and once with the
    four views in turn (frame k: view k mod 4). Every frame of either run finds the same 5 faces.
    Each view's landmarks are in full-frame coordinates within 3% of the face's size of the plain
    run's (the same mesh with each landmark swapped for its mirror partner, what a mirrored crop
    gives when it is not mirrored back, is over 25% away), with the same expression (blendshapes
    correlated) and head rotation (within 5 degrees). The views take turns: the mirrored frames
    differ from the plain run more than the cycle's own plain frame does."""
    from facephi_ros.features.normalize import landmark_mirror, rotation_of

    img = cv2.cvtColor(cv2.imread(str(faces_dir / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    runs = {}
    for views in (("plain",), CYCLE):
        with MultiFaceLandmarker(config=MultiFaceConfig(min_face_px=24, views=views)) as mf:
            runs[views] = [sorted(mf.detect(img, 1000.0 * k), key=lambda m: m.bbox[0]) for k in range(6)]
    plain, cycle = runs[("plain",)], runs[CYCLE]
    assert [len(f) for f in plain] == [len(f) for f in cycle] == [5] * 6
    mean_off = {}
    for k in range(1, 6):
        name = CYCLE[k % len(CYCLE)]
        offs = []
        for m, n in zip(plain[k], cycle[k]):
            offs.append(_offset(m.landmarks, m, n.landmarks, w, h))
            assert offs[-1] < 0.03, (k, name, offs[-1])
            assert _offset(m.landmarks, m, n.landmarks[landmark_mirror()], w, h) > 0.25, (k, name)
            np.testing.assert_allclose(n.bbox, m.bbox, atol=0.05 * max(m.bbox[2], m.bbox[3]))
            assert np.corrcoef(n.blendshapes, m.blendshapes)[0, 1] > 0.9, (k, name)
            r = rotation_of(n.matrix) @ rotation_of(m.matrix).T
            assert np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) < 5, (k, name)
        mean_off[k] = float(np.mean(offs))
    assert min(mean_off[1], mean_off[3], mean_off[5]) > 2 * mean_off[4], mean_off  # mirror vs the cycle's plain frame


def test_offline_tools_landmark_with_the_node_settings():
    """MultiFaceConfig.from_config_file is what the benchmarks and eval_stream use to landmark as
    the face-mesh node does: it carries config/facephi.yaml's face_mesh values, crop views
    included, and a tool's own overrides on top."""
    import yaml

    from facephi_ros.paths import shipped

    p = yaml.safe_load((shipped("config") / "facephi.yaml").read_text())["face_mesh"]["ros__parameters"]
    cfg = MultiFaceConfig.from_config_file()
    assert cfg.views == tuple(p["landmark_views"]) and cfg.min_face_px == p["min_face_px"]
    assert (cfg.max_faces, cfg.min_detection_confidence, cfg.confirm_confidence, cfg.landmark_threads) == \
        (p["num_faces"], p["new_face_confidence"], p["confirm_confidence"], p["landmark_threads"])
    cfg.check()
    assert MultiFaceConfig.from_config_file(views=("plain",), asynchronous=True).views == ("plain",)


def _turned_head(yaw_deg: float, roll_deg: float) -> np.ndarray:
    y, r = np.radians(yaw_deg), np.radians(roll_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry
    m[:3, 3] = [1.0, -2.0, -40.0]
    return m


def test_a_mirrored_mesh_comes_back_as_the_camera_shows_the_face():
    """unflip (a mesh found in a mirrored crop -> the unmirrored crop's view): x mirrored within the
    crop, each landmark's index swapped with its partner's, left and right blendshapes swapped, and
    the head's yaw and roll change sign while pitch stays; twice is the identity."""
    from facephi_ros.features.normalize import landmark_mirror, pose_angles
    from facephi_ros.landmarks.landmarker import BLENDSHAPE_NAMES, FaceMesh
    from facephi_ros.landmarks.views import unflip

    rng = np.random.default_rng(0)
    lm = rng.uniform(0.2, 0.8, (478, 3)).astype(np.float32)
    bs = rng.uniform(0, 1, 52).astype(np.float32)
    mesh = FaceMesh(lm, bs, _turned_head(20.0, 8.0), np.zeros(4, np.float32))
    back = unflip(mesh)
    mirror = landmark_mirror()
    np.testing.assert_allclose(back.landmarks[:, 0], 1.0 - lm[mirror, 0], atol=1e-6)
    np.testing.assert_allclose(back.landmarks[:, 1:], lm[mirror, 1:], atol=1e-6)
    left, right = BLENDSHAPE_NAMES.index("eyeBlinkLeft"), BLENDSHAPE_NAMES.index("eyeBlinkRight")
    assert back.blendshapes[left] == bs[right] and back.blendshapes[right] == bs[left]
    yaw, pitch, roll = pose_angles(mesh.matrix)
    np.testing.assert_allclose(pose_angles(back.matrix), [-yaw, pitch, -roll], atol=1e-6)
    twice = unflip(back)
    np.testing.assert_allclose(twice.landmarks, lm, atol=1e-6)
    np.testing.assert_allclose(twice.blendshapes, bs)
    np.testing.assert_allclose(twice.matrix, mesh.matrix, atol=1e-9)


def test_a_zoomed_view_cuts_a_crop_zoom_times_as_wide():
    """zoom-in and mirror-zoom-out change the side of the square cut from the frame by their zoom
    (the crop the landmarker sees keeps crop_px); the plain view cuts crop_scale times the box."""
    rgb = np.zeros((480, 640, 3), np.uint8)
    box = np.array([250.0, 180.0, 100.0, 100.0], np.float32)
    with MultiFaceLandmarker(config=MultiFaceConfig(min_face_px=24, confirm_confidence=0)) as mf:
        sides = {name: mf._cut(rgb, box, mf.cfg.crop_scale, v.zoom)[3] for name, v in CROP_VIEWS.items()}
        assert mf._cut(rgb, box, mf.cfg.crop_scale, CROP_VIEWS["zoom-in"].zoom)[0].shape == (192, 192, 3)
    assert sides["plain"] == sides["mirror"] == round(100 * mf.cfg.crop_scale)
    assert sides["zoom-in"] == round(100 * mf.cfg.crop_scale * CROP_VIEWS["zoom-in"].zoom) < sides["plain"]
    assert sides["mirror-zoom-out"] == round(100 * mf.cfg.crop_scale * CROP_VIEWS["mirror-zoom-out"].zoom) > sides["plain"]


def test_views_from_node_parameters_as_a_list_a_string_or_absent():
    base = {"num_faces": 8, "min_face_px": 24, "detect_period_s": 0.25, "new_face_confidence": 0.6,
            "min_presence_confidence": 0.5, "confirm_confidence": 0.65, "landmark_threads": 2}
    assert MultiFaceConfig.from_node_params(base).views == ("plain",)
    assert MultiFaceConfig.from_node_params(base | {"landmark_views": "plain, mirror"}).views == ("plain", "mirror")
    assert MultiFaceConfig.from_node_params(base | {"landmark_views": ["mirror"]}).views == ("mirror",)
