"""How much emotion accuracy small faces lose, per landmarking setting, on held-out TRAINING
images (the landmark model's own validation share): the setting for small faces is chosen here,
never on the test split that the small-face bag (benchmarks/faces --only bag) reports.

Each image is drawn as the small-face bag draws it (facephi_ros.bags.make: 48-64 px wide inside a
640x480 frame of an empty room, the same per-frame jitter), shown for `--frames` frames to the
MultiFaceLandmarker in tracking mode, and the shipped emotion model (fresh window, argmax, no
label rule) reads that face's landmarks. Beside it the same model on the same images' offline
features (the dataset builder's rendering, runs/features/fer2013/train.npz), as eval_lstm
scores them. The paired difference is the small-face loss.

    python -m benchmarks.small_face_gap --images 490 --set crop_scale=1.8 --set crop_scale=2.4
    # -> docs/results/small_face_gap.json

--bag also replays the same images as the small-face bag shows them (facephi_ros.bags.make, each
image 1 s at one place, through the face-mesh and emotion nodes, FacePhi off) and scores the bag
as benchmarks/faces scores the test-split one: whether the bag's protocol loses more than the
fresh 16-frame stream above, on images that may be read as often as needed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent


def validation_images(features: Path, classes: list[str], training_config: dict, n: int,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, object]:
    """Indices into train.npz of up to n images of the landmark model's validation share (the
    faces train_lstm.validation_split held out under the model's training config), balanced over
    classes, and the split."""
    from facephi_ros.data.feature_files import load_split
    from training.train_lstm import validation_split

    data = load_split(features, "train", classes, views=True)
    _, val_idx = validation_split(training_config, data)
    rng = np.random.default_rng(seed)
    per = int(np.ceil(n / len(classes)))
    pick = []
    for k in range(len(classes)):
        members = val_idx[data.labels[val_idx] == k]
        pick += list(rng.permutation(members)[:per])
    pick = np.sort(np.array(pick))
    return pick, data.labels[pick], data


def offline_predictions(model, data, idx: np.ndarray) -> np.ndarray:
    from training.train_lstm import stream_probs

    probs = stream_probs(model, torch.from_numpy(data.norm_landmarks[idx]), torch.from_numpy(data.blendshapes[idx]),
                         model.cfg.window)
    return probs.argmax(1)


def small_face_predictions(paths: list[str], root: Path, frames: int, settings: dict, model_dir=None,
                           seed: int = 0, face_px: tuple[int, int] = (48, 64)) -> tuple[np.ndarray, float]:
    """(prediction per image (-1: no face in the last frame), ms per frame) with the
    MultiFaceLandmarker built with `settings` (MultiFaceConfig fields). The same seed gives every
    setting the same placements and the same camera jitter, so settings compare image by image."""
    from facephi_ros.bags.make import StreamSpec, camera_jitter, small_face_placer
    from facephi_ros.emotion.estimator import EmotionEstimator
    from facephi_ros.emotion.label_rule import ARGMAX
    from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
    from benchmarks.faces import data_dir

    spec = StreamSpec(canvas=(640, 480), face_px=tuple(face_px), background=str(data_dir() / "faces" / "no_face.mp4"),
                      face_moves=True, seed=seed)
    rng = np.random.default_rng(seed + 1)
    place = small_face_placer(spec, rng)
    est = EmotionEstimator(model_dir, label_rule=ARGMAX)
    cfg = MultiFaceConfig.from_config_file(**settings)  # the node's settings, then this run's
    preds, spent = np.full(len(paths), -1), []
    with MultiFaceLandmarker(config=cfg) as mf:
        for i, p in enumerate(tqdm(paths, desc=" ".join(f"{k}={v}" for k, v in settings.items()) or "default",
                                   unit="image")):
            canvas = place(str(root / p), i)
            mf.reset()
            est.reset()
            last = None
            for k in range(frames):
                rgb = np.ascontiguousarray(camera_jitter(canvas, rng, spec)[:, :, ::-1])
                t0 = time.perf_counter()
                meshes = mf.detect(rgb, timestamp_ms=k * 1000 / 30)
                spent.append(time.perf_counter() - t0)
                if not meshes:
                    last = None
                    continue
                m = meshes[0]
                out = est.update([(0, m.landmarks, m.blendshapes, m.matrix)], rgb.shape[1], rgb.shape[0], k / 30, now=k / 30)
                last = int(out[0].probs.argmax())
            preds[i] = -1 if last is None else last
    return preds, 1000 * float(np.median(spent))


def resampled_offline_predictions(model, paths: list[str], root: Path, seed: int = 0) -> np.ndarray:
    """The offline pipeline (the dataset builder's rendering, one landmarker pass, eval_lstm's
    stream) on each image after it was redrawn as the bag draws a small face, without the room
    or the node: resampled to a width in 48-64 px (bicubic) and moved by a sub-pixel jitter
    (bilinear). What this loses against the clean rendering is lost before any crop or tracking."""
    from facephi_ros.data.image_folder import View, extract_one
    from facephi_ros.features.normalize import normalize_landmarks
    from facephi_ros.landmarks.landmarker import Landmarker
    from training.train_lstm import stream_probs

    rng = np.random.default_rng(seed)
    preds = np.full(len(paths), -1)
    with Landmarker(num_faces=1, video=False) as lm:
        for i, p in enumerate(tqdm(paths, desc="offline, resampled", unit="image")):
            view = View("redrawn", resample_px=int(rng.uniform(48, 64)), shift_px=float(rng.uniform(-1, 1)))
            found, lms, bs, mat = extract_one(lm, str(root / p), view=view)
            if found:
                n = normalize_landmarks(lms[None], mat[None]).astype(np.float32)
                preds[i] = int(stream_probs(model, torch.from_numpy(n), torch.from_numpy(bs[None]), model.cfg.window).argmax(1)[0])
    return preds


def rescore_with_fresh_windows(bag: Path, recorded: Path) -> dict:
    """The landmarks a small-face bag replay recorded (/facephi/faces), read again by the
    shipped model with a fresh window per image (after the cross-fade) and scored like the bag
    (the majority over each segment's second half, the model's top class): whether carrying the
    window across image changes is what the bag loses. Reads a test-split bag already evaluated
    (benchmarks/faces --only bag --keep ...): a diagnosis, no setting is chosen from it."""
    from collections import defaultdict

    from facephi_ros.bags.io import GT_TOPIC, BagReader, stamp_ns
    from facephi_ros.emotion.estimator import EmotionEstimator
    from facephi_ros.emotion.label_rule import ARGMAX
    from facephi_ros.evaluation.bag_metrics import segment_labels

    truth = {}
    with BagReader(bag) as r:
        for _, _, _, _, m in r.messages([GT_TOPIC]):
            truth[stamp_ns(m.header)] = (list(m.class_names).index(m.label), int(m.face_id))
    frames = {}
    with BagReader(recorded) as r:
        for _, _, _, _, m in r.messages(["/facephi/faces"]):
            frames[stamp_ns(m.header)] = [(np.asarray(f.landmarks, np.float32).reshape(-1, 3), np.asarray(f.blendshapes, np.float32),
                                           np.asarray(f.transformation_matrix).reshape(4, 4), f.image_width, f.image_height)
                                          for f in m.faces]
    segs = defaultdict(list)
    stamps = sorted(truth)
    for s in stamps:
        segs[truth[s][1]].append(s)
    est = EmotionEstimator(label_rule=ARGMAX)
    pred = {}  # the model's top class per frame, with a fresh window per segment
    for ss in tqdm(segs.values(), desc="fresh windows", unit="segment"):
        est.reset()
        for k, s in enumerate(ss[3:]):  # after the cross-fade (0.1 s)
            if frames.get(s):
                lm, bs, mat, w, h = frames[s][0]
                pred[s] = int(est.update([(0, lm, bs, mat)], w, h, k / 30, now=k / 30)[0].probs.argmax())
    seg_true, seg_pred = segment_labels([pred.get(s, -1) for s in stamps], [truth[s][0] for s in stamps],
                                        [truth[s][1] for s in stamps])
    correct = sum(int(p == t) for p, t in zip(seg_pred, seg_true))
    return {"segments": len(seg_true), "fresh_window_segment_acc": round(correct / len(seg_true), 4),
            "segments_without_face_in_second_half": seg_pred.count(-1), "bag": str(bag), "recorded": str(recorded)}


def replay_as_bag(paths: list[str], root: Path, work: Path) -> dict:
    """These images (root-relative) as a small-face bag (the test-split bag's settings), replayed
    through the node set and scored per segment: the published label and the model's top class."""
    import hashlib

    from benchmarks.faces import data_dir, replay_small_faces

    split = {Path(p).parts[0] for p in paths}
    if len(split) != 1:
        raise SystemExit(f"the images come from more than one split: {sorted(split)}")
    split = split.pop()
    digest = hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:8]  # a bag of other images is another bag
    bag = work / f"{split}_small_faces_{len(paths)}_{digest}"
    ev = replay_small_faces(root, split, bag, work / f"eval_{bag.name}", data_dir() / "faces" / "no_face.mp4",
                            only=tuple(str(Path(*Path(p).parts[1:])) for p in paths))
    return {"segments": len(paths), "published_acc": ev["segment_accuracy"],
            "model_top_class_acc": ev["model_top_class"]["segment_accuracy"],
            "frames_with_face": round(ev["frames_with_face"] / ev["frames_published"], 4),
            "processed_ratio": ev["processed_ratio"], "bag": str(bag)}


def parse_setting(s: str) -> dict:
    """'crop_scale=2.4,crop_px=256' -> MultiFaceConfig fields with their own types; a tuple field's
    items are joined by '+' ('views=plain+mirror')."""
    from facephi_ros.landmarks.multiface import MultiFaceConfig

    defaults = MultiFaceConfig()
    out = {}
    for part in filter(None, s.split(",")):
        k, v = part.split("=")
        d = getattr(defaults, k)
        out[k] = tuple(v.split("+")) if isinstance(d, tuple) else type(d)(float(v))
    return out


def main(argv=None) -> int:
    from facephi_ros.emotion.estimator import DEFAULT_MODEL_DIR
    from facephi_ros.evaluation.metrics import command_line, write_result
    from facephi_ros.models.lstm import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=490)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--set", action="append", default=[], help="MultiFaceConfig fields, e.g. crop_scale=2.4,crop_px=256 "
                                                                "(repeatable: one run each; the default always runs)")
    ap.add_argument("--model", type=Path, default=None, help="emotion model folder (default: the shipped one)")
    ap.add_argument("--face-px", type=int, nargs=2, default=[48, 64], metavar=("MIN", "MAX"),
                    help="face widths drawn (default: the small-face bag's 48-64 px)")
    ap.add_argument("--seed", type=int, default=0, help="placements and camera jitter (the images stay the same)")
    ap.add_argument("--features", type=Path, default=REPO / "runs/features/fer2013")
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared/data/fer2013")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/small_face_gap.json")
    ap.add_argument("--rescore-bag", nargs=2, type=Path, metavar=("BAG", "RECORDED"),
                    help="only re-read a replayed small-face bag's recorded landmarks with fresh windows "
                         "(e.g. runs/bags/fer2013_test_small_faces_100pc runs/bags/eval_small_faces/recorded)")
    ap.add_argument("--bag", type=Path, default=None, metavar="WORK",
                    help="also build and replay a small-face bag of the same images in this folder")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.rescore_bag:
        res = rescore_with_fresh_windows(*a.rescore_bag)
        print(json.dumps(res))
        return 0
    model, meta = load_model(a.model or DEFAULT_MODEL_DIR)
    idx, labels, data = validation_images(a.features, list(model.cfg.classes), meta["training_config"], a.images)
    offline = offline_predictions(model, data, idx)
    off_acc = float((offline == labels).mean())
    print(f"offline: {off_acc:.4f} on {len(idx)} held-out training images")
    res = resampled_offline_predictions(model, [str(p) for p in data.paths[idx]], a.root)
    r_acc = float((res == labels).mean())
    print(f"offline, resampled as the bag draws a small face: {r_acc:.4f}")
    runs, preds = {}, {}
    for s in [""] + a.set:
        settings = parse_setting(s)
        pred, ms = small_face_predictions([str(p) for p in data.paths[idx]], a.root, a.frames, settings, a.model,
                                          seed=a.seed, face_px=tuple(a.face_px))
        preds[s or "default"] = pred
        acc = float((pred == labels).mean())
        both = (pred >= 0)
        runs[s or "default"] = {"acc": round(acc, 4), "gap_points": round(100 * (off_acc - acc), 2),
                                "found": round(float(both.mean()), 4),
                                "acc_where_found": round(float((pred[both] == labels[both]).mean()), 4),
                                "offline_acc_where_found": round(float((offline[both] == labels[both]).mean()), 4),
                                "agreement_with_offline": round(float((pred[both] == offline[both]).mean()), 4),
                                "ms_per_frame_p50": round(ms, 2)}
        if s:  # paired with the default run on the same images and frames
            d = (pred == labels).astype(float) - (preds["default"] == labels)
            runs[s].update({"minus_default_points": round(100 * float(d.mean()), 2),
                            "minus_default_se_points": round(100 * float(d.std() / np.sqrt(len(d))), 2)})
        print(s or "default", runs[s or "default"])
    bag = replay_as_bag([str(p) for p in data.paths[idx]], a.root, a.bag) if a.bag else None
    if bag:
        bag["gap_points_model_top_class"] = round(100 * off_acc - 100 * bag["model_top_class_acc"], 2)
        bag["gap_points_published"] = round(100 * off_acc - 100 * bag["published_acc"], 2)
        print("bag", bag)
    write_result(a.out, {"offline_acc": round(off_acc, 4), "offline_resampled_acc": round(r_acc, 4),
                         "offline_resampled_gap_points": round(100 * (off_acc - r_acc), 2),
                         "model": str(a.model) if a.model else "the shipped lstm_fer7",
                         "images": int(len(idx)), "frames": a.frames, "face_px": list(a.face_px), "seed": a.seed,
                         "split": "train (the landmark model's held-out validation share)", "runs": runs,
                         **({"bag": bag} if bag else {}),
                         "command": command_line("python -m benchmarks.small_face_gap", argv)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
