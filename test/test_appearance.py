"""Appearance mode (issue 19): the eye-aligned crop, the appearance model, the message fields,
the emotion estimator's choice between the hybrid and the landmark model, and the face-mesh node
with the mode on and off (real MediaPipe on real photos from ../shared/data/faces)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facephi_ros.appearance.crop import CROP_SIZE, TEMPLATE_EYES, aligned_crop, crop_transform, eye_centres

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photo(faces_dir):
    return cv2.cvtColor(cv2.imread(str(faces_dir / "0-f15-hao-ph.jpg")), cv2.COLOR_BGR2RGB)


def face_of(rgb):
    from facephi_ros.landmarks.landmarker import Landmarker

    with Landmarker(video=False, num_faces=1) as lm:
        faces = lm.detect(rgb)
    assert faces, "MediaPipe found no face"
    return faces[0]


def test_crop_transform_puts_the_eye_centres_on_the_template():
    lm = np.zeros((478, 3), np.float32)
    lm[[33, 133], :2] = [[0.30, 0.42], [0.36, 0.40]]  # image-left eye, tilted
    lm[[362, 263], :2] = [[0.52, 0.36], [0.58, 0.34]]
    eyes = eye_centres(lm, 640, 480)
    np.testing.assert_allclose(eyes, [[0.33 * 640, 0.41 * 480], [0.55 * 640, 0.35 * 480]], rtol=1e-6)
    m = crop_transform(lm, 640, 480)
    np.testing.assert_allclose(eyes @ m[:, :2].T + m[:, 2], TEMPLATE_EYES, atol=1e-6)
    # a similarity: equal scale on both axes, no shear
    np.testing.assert_allclose(m[:, :2] @ m[:, :2].T / (m[0, 0] ** 2 + m[1, 0] ** 2), np.eye(2), atol=1e-9)


def test_rotated_and_rescaled_face_gives_the_same_crop(photo):
    """The same face rolled by +20 or -15 degrees, shrunk or enlarged, and landmarked again by
    MediaPipe gives the same crop within a few grey levels; a crop of the landmarks' bounding box
    differs ten times as much."""
    h, w = photo.shape[:2]

    def box_crop(rgb, f):
        x, y, bw, bh = f.bbox.astype(int)
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[max(y, 0):y + bh, max(x, 0):x + bw]
        return cv2.resize(g, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA).astype(float)

    f0 = face_of(photo)
    c0 = aligned_crop(photo, f0.landmarks)
    assert c0.shape == (CROP_SIZE, CROP_SIZE) and c0.dtype == np.uint8 and c0.std() > 20
    c0, b0 = c0.astype(float), box_crop(photo, f0)
    for angle, scale in ((20, 0.8), (-15, 1.3), (0, 0.35)):
        m = cv2.getRotationMatrix2D((w / 2 + 30, h / 2 - 20), angle, scale)
        moved = cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        f = face_of(moved)
        c = aligned_crop(moved, f.landmarks).astype(float)
        diff = np.abs(c - c0).mean()
        assert diff < 8 and np.corrcoef(c.ravel(), c0.ravel())[0, 1] > 0.95, (angle, scale, diff)
        if angle:
            assert np.abs(box_crop(moved, f) - b0).mean() > 3 * diff


def test_appearance_model_is_the_committed_network_on_the_crop(photo):
    import torch

    from facephi_ros.appearance.model import AppearanceModel
    from facephi_ros.models.pixel_teacher import CLASSES, preprocess

    model = AppearanceModel(precision="float")  # the int8 network: test_int8_network_is_the_float_network_quantised
    f = face_of(photo)
    emb, logits = model(photo, [f.landmarks, f.landmarks])
    assert emb.shape == (2, 256) and logits.shape == (2, 7) and emb.dtype == np.float32
    assert model.classes == CLASSES and CLASSES[int(logits[0].argmax())] == "happy"
    assert model.network.meta["extra"].get("fine_tuned_on")  # the appearance network, not the teacher itself
    with torch.no_grad():  # the optimised network gives the eager network's numbers
        e_ref, l_ref = model.network(preprocess(aligned_crop(photo, f.landmarks)))
    np.testing.assert_allclose(logits[0], l_ref[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(emb[0], e_ref[0].numpy(), atol=1e-3)
    e0, l0 = model(photo, [])
    assert e0.shape == (0, 256) and l0.shape == (0, 7)


def test_missing_or_corrupt_appearance_weights_give_one_line(tmp_path):
    from facephi_ros.appearance.model import AppearanceModel
    from facephi_ros.models.lstm import ModelFileError

    with pytest.raises(ModelFileError, match="not found: build them with `python -m training.train_appearance`"):
        AppearanceModel(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="corrupt") as e:
        AppearanceModel(bad)
    assert "\n" not in str(e.value)


def test_int8_network_is_the_float_network_quantised(photo, tmp_path):
    """auto runs the committed int8 file on this x86 CPU; it gives the float network's class and
    nearly its embedding; an int8 file beside other weights is refused, and auto falls back to
    float (saying why) where there is none."""
    import shutil

    from facephi_ros.appearance.model import AppearanceModel, default_path
    from facephi_ros.appearance.quantized import int8_path
    from facephi_ros.models.lstm import ModelFileError

    q, f = AppearanceModel(), AppearanceModel(precision="float")
    assert (q.precision, f.precision) == ("int8", "float") and q.int8_note == ""
    face = face_of(photo)
    rng = np.random.default_rng(0)  # the photo's crop and 15 moved copies of it
    crops = [aligned_crop(photo, face.landmarks)]
    for _ in range(15):
        m = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), rng.uniform(-8, 8), rng.uniform(0.9, 1.1))
        lm = face.landmarks.copy()
        xy = lm[:, :2] * [photo.shape[1], photo.shape[0]]
        xy = xy @ m[:, :2].T + m[:, 2]
        lm[:, :2] = xy / [photo.shape[1], photo.shape[0]]
        crops.append(aligned_crop(cv2.warpAffine(photo, m, photo.shape[1::-1]), lm))
    (eq, lq), (ef, lf) = q.embed_crops(np.stack(crops)), f.embed_crops(np.stack(crops))
    assert (lq.argmax(1) == lf.argmax(1)).mean() >= 0.9 and q.classes[int(lq[0].argmax())] == "happy"
    cos = np.sum(eq * ef, 1) / (np.linalg.norm(eq, axis=1) * np.linalg.norm(ef, axis=1))
    assert cos.min() > 0.97, cos
    assert np.abs(lq - lf).max() > 0  # really another network, not the float one again

    other = tmp_path / "appearance.safetensors"  # the teacher's weights with the appearance int8 file
    shutil.copy(REPO / "models" / "pixel_teacher" / "pixel_teacher.safetensors", other)
    shutil.copy(int8_path(default_path()), int8_path(other))
    with pytest.raises(ModelFileError, match="made from other weights"):
        AppearanceModel(other, precision="int8")
    int8_path(other).unlink()
    fallback = AppearanceModel(other)
    assert fallback.precision == "float" and "no int8 file" in fallback.int8_note
    with pytest.raises(ModelFileError, match="precision must be one of"):
        AppearanceModel(precision="fp16")


def test_message_fields_round_trip_and_bad_vectors_are_refused():
    from facephi_ros.msg import FaceLandmarks

    from facephi_ros.nodes.convert import MessageError, msg_appearance, set_appearance

    m = FaceLandmarks()
    assert msg_appearance(m) is None  # the mode is off: no vector
    emb, logits = np.arange(256, dtype=np.float32) / 256, np.linspace(-1, 1, 7, dtype=np.float32)
    set_appearance(m, emb, logits, ["a", "b", "c", "d", "e", "f", "g"])
    vec, classes = msg_appearance(m)
    np.testing.assert_array_equal(vec, np.concatenate([emb, logits]))
    assert classes == ["a", "b", "c", "d", "e", "f", "g"]
    m.appearance_classes = ["a"]
    with pytest.raises(MessageError, match="7 appearance logits for 1 classes"):
        msg_appearance(m)
    set_appearance(m, np.full(256, np.nan), logits, list("abcdefg"))
    with pytest.raises(MessageError, match="NaN"):
        msg_appearance(m)


@pytest.fixture(scope="module")
def estimator_inputs(photo):
    from facephi_ros.appearance.model import AppearanceModel

    f = face_of(photo)
    model = AppearanceModel()
    emb, logits = model(photo, [f.landmarks])
    return f, np.concatenate([emb[0], logits[0]]), model.classes, photo.shape[1], photo.shape[0]


def test_estimator_picks_the_hybrid_model_for_faces_with_a_vector(estimator_inputs):
    from facephi_ros.emotion.estimator import EmotionEstimator

    f, vec, classes, w, h = estimator_inputs
    est = EmotionEstimator()
    assert est.hybrid is not None and est.hybrid_name == "lstm:lstm_hybrid_fer7"
    plain = (1, f.landmarks, f.blendshapes, f.matrix)
    with_vec = (2, f.landmarks, f.blendshapes, f.matrix, vec, classes)
    wrong = (3, f.landmarks, f.blendshapes, f.matrix, vec[:100], classes)
    for k in range(5):
        out = {e.face_id: e for e in est.update([plain, with_vec, wrong], w, h, t=k / 30, now=0.0)}
    assert out[1].model == est.name and out[3].model == est.name  # no vector / a vector it cannot read
    assert out[2].model == est.hybrid_name and out[2].window_frames == 5
    assert "100 values" in est.appearance_mismatch and "using the landmark model" in est.appearance_mismatch
    assert out[2].label == "happy" and out[2].probs.argmax() == classes.index("happy")
    assert not np.allclose(out[1].probs, out[2].probs)  # two models, two answers
    # face 2 loses its vector (the mode was switched off): it starts a new window with the landmark model
    e = est.update([(2, f.landmarks, f.blendshapes, f.matrix)], w, h, t=6 / 30, now=0.0)[0]
    assert e.model == est.name and e.window_frames == 1
    # no hybrid: every face goes to the landmark model
    est = EmotionEstimator(hybrid_dir="none")
    assert est.hybrid is None and est.update([with_vec], w, h, t=0.0, now=0.0)[0].model == est.name


def test_hybrid_model_with_other_classes_is_refused_in_one_line(tmp_path):
    import json
    import shutil

    from facephi_ros.emotion.estimator import DEFAULT_HYBRID_DIRS, EmotionEstimator
    from facephi_ros.models.lstm import ModelFileError

    bad = tmp_path / "hybrid"
    shutil.copytree(DEFAULT_HYBRID_DIRS[0], bad)
    meta = json.loads((bad / "model.json").read_text())
    meta["config"]["classes"] = list(reversed(meta["config"]["classes"]))
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="has classes") as e:
        EmotionEstimator(hybrid_dir=bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelFileError, match="no appearance input"):
        EmotionEstimator(hybrid_dir=DEFAULT_HYBRID_DIRS[0].parent / "lstm_fer7")
    with pytest.raises(ModelFileError, match="is a hybrid model"):
        EmotionEstimator(model_dir=DEFAULT_HYBRID_DIRS[0])


LOADS = """
import sys
import rclpy
from rclpy.parameter import Parameter
rclpy.init()
from facephi_ros.nodes.face_mesh_node import FaceMeshNode
node = FaceMeshNode(parameter_overrides=[Parameter("appearance", value={on})])
node.trigger_configure()
print("configured", node.configured, "appearance", node.appearance is not None,
      "torch", "torch" in sys.modules, "teacher", "facephi_ros.models.pixel_teacher" in sys.modules,
      "precision", node.appearance.precision if node.appearance else None)
"""


@pytest.mark.parametrize("on", [False, True])
def test_face_mesh_node_loads_the_network_only_in_appearance_mode(ros, on):
    """A robot that leaves the mode off pays nothing: configuring the face-mesh node does not
    even import torch or the teacher. With the mode on, configure loads them."""
    out = subprocess.run([sys.executable, "-c", LOADS.format(on=on)], capture_output=True, text=True, timeout=120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("configured")), out.stdout + out.stderr)
    assert line == f"configured True appearance {on} torch {on} teacher {on} precision {'int8' if on else None}", line
