"""Benchmark: every face in the room (issue 16). Writes docs/results/faces.json.

    python -m benchmarks.faces [--scenes 20] [--no-node-bench] [--out docs/results/faces.json]

1. group photo: faces found in multi_face.jpg by the multi-face finder and, beside it, by the
   landmarker's own whole-frame detector (the previous default); then the photo as a 3 s video
   at 30 Hz: when all five have ids, and how many ids were given;
2. detection by face width: 24-120 px real faces pasted into 640x480 frames of a real room, three
   per frame, one detector scan per frame;
3. composed scenes: 2-10 faces per frame at 640x480 and 1280x720, varied sizes and places,
   followed for 30 frames at 30 Hz as the node does (asynchronous scans every 0.3 s): the share of
   faces found in the last 5 frames;
4. entry latency: a face that appears beside two tracked ones, until the tracker gives it an id;
5. cost: milliseconds per frame against the number of faces (1-5), the cost of each extra face
   and the frames per second with 5 faces;
6. one face at 640x480 / 30 Hz through the face-mesh node, against the previous default in the
   same run (benchmarks/landmark_bench.py; --no-node-bench reuses its last result);
7. emotion on small faces: a labelled bag of FER2013 test faces at 48-64 px inside 640x480
   frames, replayed through the face mesh and the emotion node, against the same images'
   offline figure.
--only group-video / --only bag / --only entry / --only cost runs that part alone and merges it into the existing results.
Faces: the ten people of the photos in ../shared/data/faces and FER2013 test images that the
offline pipeline finds a face in (FER2013 holds some images with no usable face: a face no
landmark pipeline can read is not counted against finding).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
FER = REPO.parent / "shared" / "data" / "fer2013"
WIDTHS = (24, 32, 40, 56, 80, 120)
RATE = 30.0


def data_dir() -> Path:
    import os

    return Path(os.environ.get("FACEPHI_DATA", REPO.parent / "shared" / "data"))


def fer_keep():
    """A FER2013 image is kept when the offline pipeline (upscaled and padded, IMAGE mode) finds
    a face in it, as the dataset builder does."""
    from facephi_ros.landmarks.landmarker import Landmarker, prepare_small_image

    lm = Landmarker(num_faces=1, video=False)

    def keep(path: Path) -> bool:
        g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        return g is not None and bool(lm.detect(prepare_small_image(g)))

    return lm, keep


def scan_rate(mf, faces, backgrounds, width_px: int, rng) -> tuple[int, int]:
    from facephi_ros.evaluation import scenes

    hit = n = 0
    for i in range(0, len(faces), 3):
        group = faces[i:i + 3]
        out = scenes.compose(rng, backgrounds[i % len(backgrounds)], group, [width_px] * len(group))
        if out is None:
            continue
        frame, boxes = out
        mf.reset()
        found = mf.detect(frame)
        m = scenes.matches([f.bbox for f in found], boxes)
        hit += sum(j >= 0 for j in m)
        n += len(m)
    return hit, n


def follow(mf, tracker, frames, paced: bool = True):
    """Run frames through the finder and the node's tracker at 30 Hz stream time (paced in wall
    time too, so that asynchronous scans see what they would see in the node). Yields (found
    meshes, ids, seconds spent)."""
    t_next = time.monotonic()
    for k, frame in enumerate(frames):
        ts = k * 1000.0 / RATE
        t0 = time.perf_counter()
        found = mf.detect(frame, ts)
        ids, _ = tracker.update([f.bbox for f in found], [f.landmarks for f in found], ts / 1000.0)
        dt = time.perf_counter() - t0
        yield found, ids, dt
        if paced:
            t_next += 1.0 / RATE
            time.sleep(max(0.0, t_next - time.monotonic()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=20, help="composed scenes per frame size")
    ap.add_argument("--fer", type=int, default=150, help="FER2013 test images drawn (before the offline filter)")
    ap.add_argument("--no-node-bench", action="store_true", help="reuse docs/results/landmark_bench.json")
    ap.add_argument("--per-class", type=int, default=100, help="FER2013 test images per class in the small-face bag")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bags")
    ap.add_argument("--moving-bag", action="store_true", help="also a small-face bag whose face jumps to a new place per image")
    ap.add_argument("--keep-bag", action="store_true", help="no new bag replay: keep the bag figures already in --out")
    ap.add_argument("--only", choices=["group-video", "bag", "entry", "cost"], default=None,
                    help="only this part, merged into the existing --out (its command is recorded beside it)")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/faces.json")
    a = ap.parse_args(argv)
    if a.only in ("group-video", "bag"):
        from facephi_ros.evaluation.metrics import command_line, write_result

        res = json.loads(a.out.read_text())
        if a.only == "bag":
            res.update(small_face_bag(a.per_class, data_dir() / "faces" / "no_face.mp4", a.work, a.moving_bag))
        else:
            res.update(group_video(data_dir() / "faces" / "multi_face.jpg"))
        res[f"{a.only.replace('-', '_')}_command"] = command_line("python -m benchmarks.faces", argv)
        write_result(a.out, res)
        return 0

    from facephi_ros.evaluation import scenes
    from facephi_ros.evaluation.metrics import command_line, write_result
    from facephi_ros.landmarks.landmarker import Landmarker
    from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
    from facephi_ros.landmarks.tracker import FaceTracker

    node_defaults = MultiFaceConfig.from_config_file(max_faces=10)  # config/facephi.yaml's face_mesh settings
    data = data_dir()
    faces_dir = data / "faces"
    rng = np.random.default_rng(0)
    res: dict = {"settings": {"min_face_px": node_defaults.min_face_px, "detect_period_s": node_defaults.detect_period_s,
                              "tile_fraction": node_defaults.tile_fraction, "crop_scale": node_defaults.crop_scale,
                              "crop_px": node_defaults.crop_px, "views": list(node_defaults.views)}}

    # 1. the group photo
    group = np.ascontiguousarray(cv2.imread(str(faces_dir / "multi_face.jpg"))[:, :, ::-1])
    with MultiFaceLandmarker(config=MultiFaceConfig.from_config_file()) as mf:
        res["group_photo_found"] = len(mf.detect(group))
        real = scenes.real_faces(faces_dir, lambda im: (mf.reset(), mf.detect(im))[1])
    if a.only == "cost":
        old = json.loads(a.out.read_text())
        old.update(cost_by_faces(real, scenes.backgrounds(faces_dir / "no_face.mp4", (640, 480))[0], rng, node_defaults))
        old["cost_command"] = command_line("python -m benchmarks.faces", argv)
        write_result(a.out, old)
        return 0
    with Landmarker(num_faces=8, video=False) as lm:
        res["group_photo_found_whole_frame_detector"] = len(lm.detect(group))
    print(f"group photo: {res['group_photo_found']} of 5 (whole-frame detector: {res['group_photo_found_whole_frame_detector']})")
    res.update(group_video(faces_dir / "multi_face.jpg"))

    lm, keep = fer_keep()
    try:
        fer = scenes.fer_faces(data / "fer2013", "test", a.fer, seed=1, keep=keep)
    finally:
        lm.close()
    pool = real + fer
    order = rng.permutation(len(pool))
    pool = [pool[i] for i in order]
    res["faces"] = {"real_photos": len(real), "fer2013_test": len(fer)}
    bg640 = scenes.backgrounds(faces_dir / "no_face.mp4", (640, 480))
    bg1280 = scenes.backgrounds(faces_dir / "no_face.mp4", (1280, 720))

    async_cfg = MultiFaceConfig(**{**node_defaults.__dict__, "asynchronous": True})
    if a.only == "entry":
        old = json.loads(a.out.read_text())
        old.update(entry_latency(pool, bg640, rng, async_cfg))
        old["entry_command"] = command_line("python -m benchmarks.faces", argv)
        write_result(a.out, old)
        return 0

    # 2. detection rate by face width
    by_px = {}
    with MultiFaceLandmarker(config=MultiFaceConfig.from_config_file()) as mf:
        for px in tqdm(WIDTHS, desc="face widths", unit="width"):
            hit, n = scan_rate(mf, pool, bg640, px, rng)
            by_px[str(px)] = round(hit / max(n, 1), 4)
    res["detection_by_face_px"] = by_px
    ok = [px for px in WIDTHS if all(by_px[str(w)] >= 0.95 for w in WIDTHS if w >= px)]
    res["min_face_px_at_95"] = min(ok) if ok else None
    print("by width:", by_px)

    # 3. composed scenes, tracking mode
    found_total = faces_total = 0
    per_size = {}
    for size, bgs, lo, hi in (((640, 480), bg640, 40, 120), ((1280, 720), bg1280, 48, 200)):
        f_sum = n_sum = 0
        for s in tqdm(range(a.scenes), desc=f"scenes {size[0]}x{size[1]}", unit="scene"):
            for _ in range(20):
                k = int(rng.integers(2, 11))
                chosen = [pool[i] for i in rng.choice(len(pool), k, replace=False)]
                widths = [float(rng.uniform(lo, hi)) for _ in chosen]
                out = scenes.compose(rng, bgs[s % len(bgs)], chosen, widths)
                if out is not None:
                    break
            frame, boxes = out
            with MultiFaceLandmarker(config=async_cfg) as mf:
                tail = []
                for k_, (found, ids, _) in enumerate(follow(mf, FaceTracker(), [frame] * 30)):
                    if k_ >= 25:
                        tail.append(sum(j >= 0 for j in scenes.matches([f.bbox for f, i in zip(found, ids) if i], boxes)))
            f_sum += float(np.mean(tail))
            n_sum += len(boxes)
        per_size[f"{size[0]}x{size[1]}"] = round(f_sum / n_sum, 4)
        found_total += f_sum
        faces_total += n_sum
    res["composed_found_ratio"] = round(found_total / faces_total, 4)
    res["composed_found_by_size"] = per_size
    res["composed_faces"] = faces_total
    print("composed scenes:", res["composed_found_ratio"], per_size)

    # 4. entry latency
    res.update(entry_latency(pool, bg640, rng, async_cfg))

    # 5. cost against the number of faces (tracked, between scans)
    res.update(cost_by_faces(real, bg640[0], rng, node_defaults))

    # 6. one face through the node
    bench = REPO / "docs/results/landmark_bench.json"
    if not a.no_node_bench:
        from benchmarks import landmark_bench

        landmark_bench.main([])  # writes docs/results/landmark_bench.json
    lb = json.loads(bench.read_text())
    res["single_face_processed_ratio"] = lb["processed_ratio"]
    res["single_face_latency_ratio"] = lb.get("latency_ratio_to_whole_frame_detector")
    res["single_face_latency_p50_ms"] = lb["latency_p50_ms"]
    res["single_face_latency_p50_ms_whole_frame_detector"] = lb.get("whole_frame_detector", {}).get("latency_p50_ms")

    if a.keep_bag:
        old = json.loads(a.out.read_text())
        res.update({k: v for k, v in old.items() if k.startswith("bag_small_faces")})
        res["bag_small_faces_from"] = old.get("bag_small_faces_from", old.get("command"))
    else:
        res.update(small_face_bag(a.per_class, faces_dir / "no_face.mp4", a.work, a.moving_bag))
    res["command"] = command_line("python -m benchmarks.faces", argv)
    write_result(a.out, res)
    return 0


def cost_by_faces(real, background, rng, node_defaults) -> dict:
    """Landmarking time per frame with 1-5 tracked 90 px faces (between scans): the slope is
    the cost of each extra face. Measured with the node's landmark_threads and, in the same run
    on the same frames, with one thread (the faces one after another) as the baseline."""
    from facephi_ros.evaluation import scenes
    from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
    from facephi_ros.landmarks.tracker import FaceTracker

    frames = []
    for n in range(1, 6):
        out = None
        while out is None:
            out = scenes.compose(rng, background, real[:n], [90.0] * n)
        frames.append(out[0])

    def per_frame_ms(threads: int, n: int) -> float:
        cfg = MultiFaceConfig(**{**node_defaults.__dict__, "detect_period_s": 1000.0, "landmark_threads": threads})
        with MultiFaceLandmarker(config=cfg) as mf:
            times = [dt for k, (found, _, dt) in enumerate(follow(mf, FaceTracker(), [frames[n - 1]] * 40, paced=False))
                     if k >= 5]
            assert len(mf.detect(frames[n - 1], 1e9)) == n, f"{n} faces composed, {len(mf.regions)} followed"
        return round(1000 * float(np.median(times)), 2)

    res: dict = {}
    for threads, key in ((1, "_one_thread"), (node_defaults.landmark_threads, "")):
        ms = {str(n): per_frame_ms(threads, n) for n in range(1, 6)}
        slope = float(np.polyfit(np.arange(1, 6), [ms[str(n)] for n in range(1, 6)], 1)[0])
        res.update({f"ms_per_frame_by_faces{key}": ms, f"ms_per_extra_face{key}": round(slope, 2),
                    f"fps_5_faces{key}": round(1000 / ms["5"], 1)})
        print(f"ms by faces, {threads} landmark thread(s):", ms, "per extra face", res[f"ms_per_extra_face{key}"])
    res["landmark_threads"] = node_defaults.landmark_threads
    res["ms_per_extra_face_ratio_to_one_thread"] = round(res["ms_per_extra_face"] / res["ms_per_extra_face_one_thread"], 3)
    return res


def entry_latency(pool, bg640, rng, async_cfg) -> dict:
    """A third face appears in a 640x480 stream of two (paced at 30 Hz): seconds until it has an id."""
    from facephi_ros.evaluation import scenes
    from facephi_ros.landmarks.multiface import MultiFaceLandmarker
    from facephi_ros.landmarks.tracker import FaceTracker

    res = {}
    lat = []
    for t in tqdm(range(12), desc="entry latency", unit="trial"):
        chosen = [pool[i] for i in rng.choice(len(pool), 3, replace=False)]
        out = scenes.compose(rng, bg640[t % len(bg640)], chosen, [90.0, 70.0, float(rng.uniform(40, 100))])
        if out is None:
            continue
        full, boxes = out
        # the third face is hidden for the first 20 frames: paste the first two only
        before = bg640[t % len(bg640)].copy()
        for f_, b in zip(chosen[:2], boxes[:2]):
            scenes.paste(before, f_, float(b[2]), float(b[0]), float(b[1]))
        frames = [before] * 20 + [full] * 30
        with MultiFaceLandmarker(config=async_cfg) as mf:
            got = None
            for k, (found, ids, _) in enumerate(follow(mf, FaceTracker(), frames)):
                if k >= 20:
                    m = scenes.matches([f.bbox for f, i in zip(found, ids) if i], boxes[2:])
                    if m[0] >= 0:
                        got = (k - 20) / RATE
                        break
        lat.append(got if got is not None else float("inf"))
    finite = [x for x in lat if np.isfinite(x)]
    res["entry_latency_s"] = round(float(np.median(lat)), 3)
    res["entry_latency_s_p90"] = round(float(np.percentile(lat, 90)), 3) if finite else None
    res["entry_latency_trials"] = len(lat)
    res["entry_found_within_0_5_s"] = round(sum(x <= 0.5 for x in lat) / max(1, len(lat)), 3)
    print("entry latency (s):", sorted(round(x, 3) for x in lat))
    return res


def group_video(photo: Path, seconds: float = 3.0) -> dict:
    """The group photo as a video at 30 Hz (paced in wall time), through the node's finder
    settings and tracker: when all five have an id, and how many ids were ever given."""
    from facephi_ros.landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
    from facephi_ros.landmarks.tracker import FaceTracker

    rgb = np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])
    cfg = MultiFaceConfig.from_config_file(asynchronous=True)
    counts, ids_seen, spent = [], set(), []
    with MultiFaceLandmarker(config=cfg) as mf:
        for found, ids, dt in follow(mf, FaceTracker(), [rgb] * int(seconds * RATE)):
            counts.append(sum(1 for i in ids if i))
            ids_seen |= {i for i in ids if i}
            spent.append(dt)
    first = next((k for k, c in enumerate(counts) if c == 5), None)
    res = {"group_video_all_tracked_s": round(first / RATE, 3) if first is not None else None,
           "group_video_ids": len(ids_seen),
           "group_video_frames_with_5": round(sum(c == 5 for c in counts) / len(counts), 3),
           "group_video_ms_per_frame_p50": round(1000 * float(np.median(spent)), 1)}
    print("group video:", res)
    return res


def offline_same_images(files: list[str]) -> float:
    """The shipped LSTM's offline accuracy (the dataset builder's rendering and eval_lstm's
    stream scoring, no face = wrong) on these FER2013 test images."""
    import torch

    from facephi_ros.data.image_folder import extract_one
    from facephi_ros.emotion.estimator import DEFAULT_MODEL_DIR
    from facephi_ros.features.normalize import normalize_landmarks
    from facephi_ros.landmarks.landmarker import Landmarker
    from facephi_ros.models.lstm import load_model
    from training.train_lstm import stream_probs

    model, _ = load_model(DEFAULT_MODEL_DIR)
    classes = list(model.cfg.classes)
    labels = np.array([classes.index(Path(f).parent.name) for f in files])
    found, lms, bss = [], [], []
    with Landmarker(num_faces=1, video=False) as lm:
        for f in tqdm(files, desc="offline features", unit="image"):
            ok, lms_, bs, mat = extract_one(lm, str(FER / f))
            found.append(ok)
            lms.append(normalize_landmarks(lms_[None], mat[None])[0] if ok else lms_)
            bss.append(bs)
    found = np.array(found)
    pred = np.full(len(files), -1)
    if found.any():
        probs = stream_probs(model, torch.from_numpy(np.stack(lms)[found]), torch.from_numpy(np.stack(bss)[found]), model.cfg.window)
        pred[found] = probs.argmax(1)
    return float((pred == labels).mean())


def small_face_bag(per_class: int, background: Path, work: Path, with_moving: bool = False) -> dict:
    """FER2013 test faces shown at 48-64 px inside 640x480 frames of a room, replayed through
    the face mesh and the emotion node (the project's launcher, FacePhi off): per-segment
    accuracy against the same images' offline figure. The face stays at one place while the
    images change, as in the full-size labelled bag; a second bag moves it to a new place with
    every image (each image is then a new face to find: it measures finding as well)."""
    res = {}
    for moving in (False, True) if with_moving else (False,):
        ev, files = _replay_small(per_class, background, work, moving)
        key = "bag_small_faces_moving" if moving else "bag_small_faces"
        res.update({f"{key}_acc": ev["segment_accuracy"], f"{key}_frame_acc": ev["accuracy"],
                    f"{key}_model_top_class_acc": ev["model_top_class"]["segment_accuracy"],
                    f"{key}_model_top_class_frame_acc": ev["model_top_class"]["accuracy"],
                    f"{key}_frames_with_face": round(ev["frames_with_face"] / ev["frames_published"], 4),
                    f"{key}_processed_ratio": ev["processed_ratio"]})
    offline = offline_same_images(files)
    print(f"small faces: bag {res['bag_small_faces_acc']} (per segment; moving: {res.get('bag_small_faces_moving_acc')}; "
          f"the model's own top class: {res['bag_small_faces_model_top_class_acc']}), "
          f"offline {offline:.4f} on the same {len(files)} images")
    res.update({"bag_small_faces_offline_acc": round(offline, 4), "bag_small_faces_images": len(files),
                "bag_small_faces_note": "48-64 px FER2013 test faces in 640x480 frames of a room, 1 s each at 30 Hz, the face "
                                        "at one place (moving: a new place per image); accuracy per segment (majority over "
                                        "its second half) vs the offline stream figure on the same images; _acc scores the published "
                                        "(calm) label, _model_top_class_acc the model's own top class (the probabilities "
                                        "each estimate carries), as the offline figure does"})
    return res


def replay_small_faces(root: Path, split: str, bag: Path, eval_dir: Path, background: Path, **spec) -> dict:
    """Build (once) a small-face bag of `split`'s images, each 1 s at 30 Hz at 48-64 px in a 640x480
    frame of the room in `background` (StreamSpec fields in `spec` choose the images and the
    placement), and replay it through the face mesh and the emotion node (FacePhi off): the bag
    evaluation."""
    from facephi_ros.bags.evaluate import evaluate_bag
    from facephi_ros.bags.make import StreamSpec, bag_from_images

    bag.parent.mkdir(parents=True, exist_ok=True)
    if not bag.exists():  # built beside and renamed: an interrupted build never counts as a bag
        part = bag.with_name(bag.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        bag_from_images(root, split, part, StreamSpec(hold_s=1.0, transition_s=0.1, rate=30.0, canvas=(640, 480),
                                                      face_px=(48, 64), background=str(background), **spec))
        part.rename(bag)
    return evaluate_bag(bag, eval_dir, launch_args=["run_facephi:=false"])


def _replay_small(per_class: int, background: Path, work: Path, moving: bool):
    from facephi_ros.bags.io import GT_TOPIC, BagReader

    name = f"small_faces{'_moving' if moving else ''}"
    bag = work / f"fer2013_test_{name}_{per_class}pc"
    ev = replay_small_faces(FER, "test", bag, work / f"eval_{name}", background, per_class=per_class, face_moves=moving)
    with BagReader(bag) as r:
        files = []
        for _, _, _, _, m in r.messages([GT_TOPIC]):
            if not files or files[-1] != m.description:
                files.append(m.description)
    for png in ("timeline.png", "confusion.png"):
        src = work / f"eval_{name}" / png
        if src.exists():
            (REPO / "docs/results" / f"bag_{name}_{png}").write_bytes(src.read_bytes())
    return ev, files


if __name__ == "__main__":
    sys.exit(main())
