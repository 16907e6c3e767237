"""The pixel teacher: the committed weights load, the interface (face crops in, embedding and logits
out, optional mirroring), the loader's refusals, and a few real FER2013 test faces."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from conftest import DATA, need
from facephi_ros.data.image_folder import index_split
from facephi_ros.models.lstm import ModelFileError
from facephi_ros.models.pixel_teacher import (
    CLASSES,
    PixelTeacher,
    TeacherConfig,
    default_path,
    load_teacher,
    preprocess,
    save_teacher,
)


@pytest.fixture(scope="module")
def teacher():
    torch.set_num_threads(1)
    return load_teacher()


def test_committed_weights_load(teacher):
    assert default_path().is_file() and default_path().stat().st_size < 10_000_000
    assert teacher.classes == CLASSES and not teacher.training
    assert teacher.meta["extra"]["trained_with"].startswith("python -m training.train_pixel_teacher")
    assert all(p.dtype == torch.float32 for p in teacher.parameters())


def test_classes_are_the_project_order():
    with open(default_path().parent.parent / "lstm_fer7" / "model.json") as f:
        assert json.load(f)["config"]["classes"] == CLASSES
    fer = DATA / "fer2013"
    if fer.exists():
        assert index_split(fer, "test").classes == CLASSES


def test_crops_of_any_size_give_embedding_and_logits(teacher):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((48, 48), (120, 100), (31, 40), (64, 64, 3))]
    emb, logits = teacher.encode(crops)
    assert emb.shape == (4, teacher.cfg.embedding_dim) and logits.shape == (4, len(CLASSES))
    assert torch.isfinite(emb).all() and torch.isfinite(logits).all()
    e1, l1 = teacher.encode(crops[1])  # one crop = a batch of one, the same numbers
    assert e1.shape == (1, teacher.cfg.embedding_dim)
    torch.testing.assert_close(l1[0], logits[1], atol=1e-4, rtol=1e-4)
    x = preprocess(crops)
    assert x.shape == (4, 1, 48, 48)
    torch.testing.assert_close(x.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)


def test_mirroring_averages_logits(teacher):
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (60, 50), dtype=np.uint8) for _ in range(3)]
    _, plain = teacher.encode(crops)
    _, flipped = teacher.encode([c[:, ::-1] for c in crops])
    emb, mirrored = teacher.predict(crops)  # mirroring is on by default
    torch.testing.assert_close(mirrored, (plain + flipped) / 2, atol=1e-4, rtol=1e-4)
    assert emb.shape == (3, teacher.cfg.embedding_dim)
    torch.testing.assert_close(teacher.predict(crops, mirror=False)[1], plain)


def test_test_time_zooms_average_six_views(teacher):
    from facephi_ros.models.pixel_teacher import zoom

    rng = np.random.default_rng(2)
    x = preprocess([rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(2)])
    torch.testing.assert_close(zoom(x, 1.0), x, atol=1e-4, rtol=0)  # no zoom: the same pixels
    ramp = preprocess(np.tile(np.arange(0, 240, 5, dtype=np.uint8), (48, 1)))  # brightness grows left to right
    row, zin = ramp[0, 0, 24], zoom(ramp, 0.5)[0, 0, 24]  # zoom in 2x: the middle half of the row fills it
    assert abs(float(zin.max() - zin.min()) / float(row.max() - row.min()) - 0.5) < 0.05
    assert abs(float(zin.mean() - row.mean())) < 0.05  # about the centre
    with torch.no_grad():
        emb, logits = teacher.forward_tta(x, zooms=(0.8, 1.2))
        views = [teacher.forward_mirrored(v) for v in (x, zoom(x, 0.8), zoom(x, 1.2))]
        torch.testing.assert_close(logits, sum(v[1] for v in views) / 3, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(emb, sum(v[0] for v in views) / 3, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(teacher.forward_tta(x, zooms=())[1], teacher.forward_mirrored(x)[1])
    assert logits.shape == (2, 7)


def test_loader_refuses_missing_corrupt_and_wrong_classes(tmp_path):
    small = PixelTeacher(TeacherConfig(channels=[4, 8]))
    with pytest.raises(ModelFileError, match="not found"):
        load_teacher(tmp_path / "absent.safetensors")

    good = save_teacher(small, tmp_path / "ok.safetensors")
    assert load_teacher(good).cfg.channels == [4, 8]

    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="corrupt") as e:
        load_teacher(bad)
    assert "\n" not in str(e.value)

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 12) + b"not json at all")
    with pytest.raises(ModelFileError, match="corrupt"):
        load_teacher(junk)

    other = save_teacher(PixelTeacher(TeacherConfig(classes=["happy", "sad", "neutral"], channels=[4, 8])),
                         tmp_path / "fer3.safetensors")
    with pytest.raises(ModelFileError, match="has classes") as e:
        load_teacher(other)
    assert "\n" not in str(e.value)
    assert load_teacher(other, expect_classes=["happy", "sad", "neutral"]).classes == ["happy", "sad", "neutral"]


def test_teacher_recognises_real_happy_faces(teacher):
    import cv2

    idx = index_split(need(DATA / "fer2013"), "test")
    happy = CLASSES.index("happy")
    paths = [p for p, y in zip(idx.paths, idx.labels) if y == happy][:8]
    crops = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths]
    _, logits = teacher.predict(crops)
    hits = int((logits.argmax(1) == happy).sum())
    assert hits >= 5, f"only {hits} of the first 8 happy test faces are happy"


def test_module_is_ros_free():
    import facephi_ros.models.pixel_teacher as mod

    with open(mod.__file__) as f:
        assert "rclpy" not in f.read()


def test_training_reads_the_cache_alone_where_the_image_folders_are_not(tmp_path):
    """A rented GPU machine gets the training images as train_pixel_teacher's cache, without the folders."""
    from training.train_pixel_teacher import load_images

    images = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    labels = np.arange(10) % 7
    cache = tmp_path / "cache.npz"
    np.savez(cache, images=images, labels=labels, classes=np.array(CLASSES))
    x, y = load_images(tmp_path / "absent", "train", cache)
    assert (x == images).all() and (y == labels).all() and y.dtype == np.int64
    np.savez(cache, images=images, labels=labels, classes=np.array(CLASSES[::-1]))
    with pytest.raises(SystemExit, match="classes"):
        load_images(tmp_path / "absent", "train", cache)


def test_time_budget_caps_the_epochs_and_leaves_the_model_as_it_was():
    from types import SimpleNamespace

    from training.train_pixel_teacher import epochs_within

    torch.manual_seed(0)
    model = PixelTeacher(TeacherConfig(classes=list(CLASSES), channels=[8, 8, 8, 8]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randint(0, 256, (64, 1, 48, 48), dtype=torch.uint8), torch.randint(0, 7, (64,))
    a = SimpleNamespace(seed=0, batch_size=16, shift=4.0, scale=0.1, rotate=10.0, erase=0.25, epochs=50)
    val = (x[:16, 0].numpy(), y[:16].numpy())
    args = (model, x, y, 4, val, a, torch.device("cpu"), torch.nn.CrossEntropyLoss())
    rng = torch.get_rng_state()
    few, per_epoch = epochs_within(1e-5, *args)
    many, _ = epochs_within(1e4, *args)
    assert (few, many) == (1, 50) and per_epoch > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BatchNorm statistics
    assert torch.equal(torch.get_rng_state(), rng)  # dropout masks of the run that follows are those of --epochs N


def test_a_run_record_from_another_machine_finishes_under_its_own_command(tmp_path):
    """A run trained elsewhere comes back as its record (no optimiser state) and best weights; --finish
    ships them, naming the command that trained them."""
    from training.train_pixel_teacher import TRAINING_STATE, main

    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "fer2013_train.npz", images=rng.integers(0, 256, (70, 48, 48), dtype=np.uint8),
             labels=np.arange(70) % 7, classes=np.array(CLASSES))
    common = ["--root", str(tmp_path / "absent"), "--runs", str(run), "--out", str(tmp_path / "out"),
              "--channels", "4", "4", "4", "4", "--epochs", "2", "--max-steps", "1", "--no-test"]
    threads = torch.get_num_threads()
    try:
        assert main(common) == 0
        ck = torch.load(run / "last.pt", weights_only=False)
        assert ck["epoch"] == 2 and len(ck["history"]) == 2
        for k in TRAINING_STATE:
            ck.pop(k)
        torch.save(ck, run / "last.pt")
        shipped = tmp_path / "out" / "pixel_teacher.safetensors"
        shipped.unlink()
        assert main(common + ["--finish"]) == 0
        extra = load_teacher(shipped).meta["extra"]
        assert extra["epoch"] == ck["best"]["epoch"] and "--finish" not in extra["trained_with"]
        ck["epoch"], ck["history"] = 1, ck["history"][:1]  # a record of a run stopped early cannot resume
        torch.save(ck, run / "last.pt")
        with pytest.raises(SystemExit, match="record without training state"):
            main(common)
    finally:
        torch.set_num_threads(threads)
