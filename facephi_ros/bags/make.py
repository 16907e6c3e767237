"""Make rosbag2 files (MCAP by default) from a video or from a labelled image folder.

Video: every frame as sensor_msgs/Image (bgr8) on /camera/image_raw, stamped at the video's rate.
Labelled images (root/<split>/<class>/*.jpg): a stream that holds each chosen image for `hold_s`
seconds at `rate` Hz with small per-frame jitter (a camera never gives two identical frames),
cross-fading to the next face over `transition_s`; the ground truth of every frame is an
EmotionEstimate on /ground_truth/emotion (model "ground_truth", one-hot probabilities, stamp =
the image's stamp, description = the source file); the label switches half-way through a fade.
Small images are upscaled and padded exactly as the dataset builder does, so that the bag and
the offline evaluation see the same faces. With a canvas (StreamSpec.canvas), each image is shown
instead at its own size, 48x48 scaled to a random width in face_px, in a frame of a real room: a
face 2.5-4 m from the camera, which the face-mesh node must find and upscale. The face stays at
one place (a person who stays put), or with face_moves jumps to a new place with every image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.image_folder import index_split, load_for_landmarker
from ..emotion.valence_arousal import valence_arousal
from .io import GT_TOPIC, BagError, open_writer, typestore

IMAGE_TOPIC = "/camera/image_raw"
T0_NS = 1_700_000_000 * 10**9  # bag time origin for synthetic streams


def _image_msg(ts, bgr: np.ndarray, stamp_ns: int, frame_id: str = "camera"):
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    h, w = bgr.shape[:2]
    return Image(header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id),
                 height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3, data=np.ascontiguousarray(bgr).reshape(-1))


def bag_from_video(video: str | Path, out: str | Path, storage: str = "mcap", width: int = 0, max_frames: int = 0,
                   rate: float = 0.0, height: int = 0) -> dict:
    """Frames of `video` as bgr8 images; width/height resize (one of them 0: keep the aspect ratio)."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise BagError(f"cannot open video {video}")
    fps = rate or cap.get(cv2.CAP_PROP_FPS) or 30.0
    n_total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    ts = typestore()
    w = open_writer(out, storage)
    try:
        conn = w.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        k = 0
        with tqdm(total=max_frames or n_total, desc="video -> bag", unit="frame") as bar:
            while True:
                ok, f = cap.read()
                if not ok or (max_frames and k >= max_frames):
                    break
                if width or height:
                    w_ = width or int(round(f.shape[1] * height / f.shape[0]))
                    h_ = height or int(round(f.shape[0] * width / f.shape[1]))
                    if (w_, h_) != (f.shape[1], f.shape[0]):
                        f = cv2.resize(f, (w_, h_), interpolation=cv2.INTER_AREA)
                t = T0_NS + int(round(k * 1e9 / fps))
                w.write(conn, t, ts.serialize_cdr(_image_msg(ts, f, t), "sensor_msgs/msg/Image"))
                k += 1
                bar.update(1)
    finally:
        w.close()
        cap.release()
    return {"frames": k, "rate_hz": fps, "topics": [IMAGE_TOPIC]}


@dataclass
class StreamSpec:
    hold_s: float = 1.0
    transition_s: float = 0.1
    rate: float = 30.0
    per_class: int = 0  # images per class (0: all images of the split, in a shuffled order)
    seed: int = 0
    jitter_px: float = 1.0
    jitter_scale: float = 0.015
    canvas: tuple[int, int] = (0, 0)  # (width, height) > 0: small faces in a room, see the module's docstring
    face_px: tuple[int, int] = (48, 64)  # with a canvas: the face's width in pixels, drawn per image
    background: str = ""  # with a canvas: a video of an empty room (frames spread over the images)
    face_moves: bool = False  # with a canvas: each image at a new random place (else all at one place, as a
                              # person who stays put while the expression changes)
    only: tuple[str, ...] = ()  # paths relative to root/<split> to draw from (empty: the whole split)


def choose_images(root, split: str, spec: StreamSpec):
    idx = index_split(root, split)
    rng = np.random.default_rng(spec.seed)
    allowed = np.ones(len(idx.paths), bool)
    if spec.only:
        base, only = Path(root) / split, set(spec.only)
        allowed = np.array([str(Path(p).relative_to(base)) in only for p in idx.paths])
        if allowed.sum() != len(only):
            raise ValueError(f"{len(only) - int(allowed.sum())} of the {len(only)} images asked for are not in {base}")
    chosen = []
    for k in range(len(idx.classes)):
        members = np.nonzero((idx.labels == k) & allowed)[0]
        rng.shuffle(members)
        chosen += list(members[: spec.per_class] if spec.per_class else members)
    order = np.array(chosen)
    rng.shuffle(order)
    # avoid two neighbours of one class where possible, so that every segment boundary is a change
    labels = idx.labels[order]
    for i in range(1, len(order)):
        if labels[i] == labels[i - 1]:
            j = next((j for j in range(i + 1, len(order)) if labels[j] != labels[i - 1]), None)
            if j is not None:
                order[i], order[j] = order[j], order[i]
                labels[i], labels[j] = labels[j], labels[i]
    return idx, order


def camera_jitter(img: np.ndarray, rng, spec: StreamSpec) -> np.ndarray:
    """One camera frame of a still picture: a small random zoom and shift (spec.jitter_scale,
    spec.jitter_px), bilinear."""
    h, w = img.shape[:2]
    s = 1 + spec.jitter_scale * rng.standard_normal()
    dx, dy = spec.jitter_px * rng.standard_normal(2)
    m = np.array([[s, 0, (1 - s) * w / 2 + dx], [0, s, (1 - s) * h / 2 + dy]])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def load_bgr(path: str) -> np.ndarray:
    """The image as the dataset builder prepares it (small ones upscaled and padded), BGR."""
    try:
        return np.ascontiguousarray(load_for_landmarker(path)[:, :, ::-1])
    except ValueError as e:
        raise BagError(str(e)) from None


def small_face_placer(spec: StreamSpec, rng):
    """img(path, segment) -> a BGR canvas with the image pasted at a random width in face_px."""
    from ..evaluation.scenes import FaceSample, backgrounds, paste

    if not spec.background:
        raise BagError("a canvas needs StreamSpec.background (a video of an empty room)")
    bgs = backgrounds(Path(spec.background), spec.canvas, n=8)
    W, H = spec.canvas
    hi = max(spec.face_px)
    spot = (rng.uniform(0.1 * W, 0.9 * W - hi), rng.uniform(0.1 * H, 0.9 * H - hi))

    def img(path: str, seg: int) -> np.ndarray:
        g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if g is None:
            raise BagError(f"cannot read image {path}")
        face = FaceSample(np.repeat(g[:, :, None], 3, axis=2), np.array([0, 0, g.shape[1], g.shape[0]], np.float32), str(path))
        width = float(rng.uniform(*spec.face_px))
        if spec.face_moves:
            x, y = rng.uniform(0.1 * W, 0.9 * W - width), rng.uniform(0.1 * H, 0.9 * H - width)
        else:  # one place; the face's centre stays put whatever its size
            x, y = spot[0] + (hi - width) / 2, spot[1] + (hi - width) / 2
        frame = bgs[0 if not spec.face_moves else seg % len(bgs)].copy()
        paste(frame, face, width, x, y)
        return np.ascontiguousarray(frame[:, :, ::-1])

    return img


def bag_from_images(root: str | Path, split: str, out: str | Path, spec: StreamSpec, storage: str = "mcap") -> dict:
    idx, order = choose_images(root, split, spec)
    ts = typestore()
    EmotionEstimate = ts.types["facephi_ros/msg/EmotionEstimate"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    hold = max(1, int(round(spec.hold_s * spec.rate)))
    fade = min(hold - 1, int(round(spec.transition_s * spec.rate)))
    rng = np.random.default_rng(spec.seed + 1)
    w = open_writer(out, storage)
    n = 0
    try:
        c_img = w.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        c_gt = w.add_connection(GT_TOPIC, "facephi_ros/msg/EmotionEstimate", typestore=ts)
        prev = None
        place = small_face_placer(spec, rng) if spec.canvas[0] > 0 else None
        for seg, i in enumerate(tqdm(order, desc=f"{split} images -> bag", unit="segment")):
            img = load_bgr(idx.paths[i]) if place is None else place(idx.paths[i], seg)
            label = int(idx.labels[i])
            for k in range(hold):
                frame = camera_jitter(img, rng, spec)
                shown = label
                if prev is not None and k < fade:
                    a = (k + 1) / (fade + 1)
                    pimg, plabel = prev
                    if pimg.shape == frame.shape:
                        frame = cv2.addWeighted(camera_jitter(pimg, rng, spec), 1 - a, frame, a, 0)
                    shown = label if a >= 0.5 else plabel
                t = T0_NS + int(round(n * 1e9 / spec.rate))
                w.write(c_img, t, ts.serialize_cdr(_image_msg(ts, frame, t), "sensor_msgs/msg/Image"))
                probs = np.eye(len(idx.classes), dtype=np.float32)[shown]
                v, ar = valence_arousal(probs, idx.classes)
                gt = EmotionEstimate(
                    header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="camera"), face_id=seg + 1,
                    model="ground_truth", class_names=list(idx.classes), probabilities=probs, label=idx.classes[shown],
                    confidence=1.0, valence=v, arousal=ar, description=str(Path(idx.paths[i]).relative_to(Path(root))),
                    window_frames=k + 1)
                w.write(c_gt, t, ts.serialize_cdr(gt, "facephi_ros/msg/EmotionEstimate"))
                n += 1
            prev = (img, label)
    finally:
        w.close()
    return {"frames": n, "segments": len(order), "hold_frames": hold, "fade_frames": fade, "rate_hz": spec.rate,
            "classes": list(idx.classes), "topics": [IMAGE_TOPIC, GT_TOPIC]}
