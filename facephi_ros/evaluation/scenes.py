"""Composed scenes for measuring face finding: real faces pasted into real background frames.

Faces come from two places:
* the real photos in ../shared/data/faces (the four posed stills, single_face.jpg and the five
  people of multi_face.jpg), cut out around their landmark box with some context;
* FER2013 images (48x48 grey, tight face crops: the whole image is taken as the face).
Backgrounds are frames of no_face.mp4 (a real room without people), resized to the frame size.
Each pasted face keeps its ground-truth box, so that a finder's output can be scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.compose import paste as paste_centred

REAL_STILLS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg", "multi_face.jpg")
CONTEXT = 1.6  # a real face is cut out with this much of its surroundings (crop side / face box side)


@dataclass
class FaceSample:
    rgb: np.ndarray  # the pasted patch
    box: np.ndarray  # the face inside the patch: x, y, w, h in patch pixels
    source: str
    label: str = ""  # FER2013 class, "" for the photos


def real_faces(faces_dir: Path, finder) -> list[FaceSample]:
    """Face patches from the photos. finder(rgb) -> [FaceMesh] (a MultiFaceLandmarker's detect)."""
    out = []
    for name in REAL_STILLS:
        bgr = cv2.imread(str(faces_dir / name))
        if bgr is None:
            continue
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        h, w = rgb.shape[:2]
        for k, mesh in enumerate(finder(rgb)):
            x, y, bw, bh = mesh.bbox
            side = int(max(bw, bh) * CONTEXT)
            cx, cy = int(x + bw / 2), int(y + bh / 2)
            x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
            x1, y1 = min(w, x0 + side), min(h, y0 + side)
            patch = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            out.append(FaceSample(patch, np.array([x - x0, y - y0, bw, bh], np.float32), f"{name}#{k}"))
    return out


def fer_faces(root: Path, split: str, n: int, seed: int = 0, keep=None) -> list[FaceSample]:
    """n FER2013 images of a split, drawn evenly over the classes in a seeded order; keep(path)
    may reject images (for example those the offline pipeline finds no face in)."""
    root = Path(root)
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    pools = {c: sorted((root / split / c).glob("*.jpg")) for c in classes}
    for c in classes:
        rng.shuffle(pools[c])
    out, i = [], 0
    while len(out) < n and any(pools.values()):
        c = classes[i % len(classes)]
        i += 1
        if not pools[c]:
            continue
        p = pools[c].pop()
        if keep is not None and not keep(p):
            continue
        g = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if g is None:
            continue
        out.append(FaceSample(np.repeat(g[:, :, None], 3, axis=2), np.array([0, 0, g.shape[1], g.shape[0]], np.float32),
                              str(p.relative_to(root)), c))
    return out


def backgrounds(video: Path, size: tuple[int, int], n: int = 8) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    total = max(1, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    out = []
    for k in range(n):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * total / n))
        ok, f = cap.read()
        if ok:
            out.append(np.ascontiguousarray(cv2.resize(f, size, interpolation=cv2.INTER_AREA)[:, :, ::-1]))
    cap.release()
    if not out:
        raise ValueError(f"no frames in {video}")
    return out


def paste(frame: np.ndarray, face: FaceSample, face_px: float, x: float, y: float) -> np.ndarray:
    """Paste face so that its face box is face_px wide with the box's top-left at (x, y); returns
    the face's box in the frame."""
    k = face_px / float(face.box[2])
    ph, pw = face.rgb.shape[:2]
    nw, nh = max(1, int(round(pw * k))), max(1, int(round(ph * k)))
    patch = cv2.resize(face.rgb, (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    px, py = int(round(x - face.box[0] * k)), int(round(y - face.box[1] * k))
    paste_centred(frame, patch, px + nw / 2, py + nh / 2)
    return np.array([x, y, face.box[2] * k, face.box[3] * k], np.float32)


def place(rng, size: tuple[int, int], widths: list[float], faces: list[FaceSample], tries: int = 200) -> list[tuple[float, float]] | None:
    """Top-left corners for faces of these widths that keep each face's patch apart from the
    others' (patches may touch, faces never overlap), or None."""
    W, H = size
    rects: list[tuple[float, float, float, float]] = []
    for wpx, f in zip(widths, faces):
        k = wpx / float(f.box[2])
        hpx = f.box[3] * k
        margin = 0.15 * wpx
        for _ in range(tries):
            x = rng.uniform(margin, W - wpx - margin)
            y = rng.uniform(margin, H - hpx - margin)
            r = (x - margin, y - margin, x + wpx + margin, y + hpx + margin)
            if all(r[2] <= q[0] or q[2] <= r[0] or r[3] <= q[1] or q[3] <= r[1] for q in rects):
                rects.append(r)
                break
        else:
            return None
    return [(r[0] + 0.15 * w, r[1] + 0.15 * w) for r, w in zip(rects, widths)]


def compose(rng, background: np.ndarray, faces: list[FaceSample], widths: list[float]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """A frame with these faces at these widths (random places), and their true boxes."""
    H, W = background.shape[:2]
    spots = place(rng, (W, H), widths, faces)
    if spots is None:
        return None
    frame = background.copy()
    boxes = [paste(frame, f, w, x, y) for f, w, (x, y) in zip(faces, widths, spots)]
    return frame, boxes


def matches(found: list[np.ndarray], truth: list[np.ndarray]) -> list[int]:
    """For each true box, the index of the found box whose centre lies inside it (-1 if none);
    each found box is used once."""
    used: set[int] = set()
    out = []
    for t in truth:
        hit = -1
        for j, b in enumerate(found):
            if j in used:
                continue
            cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
            if t[0] <= cx <= t[0] + t[2] and t[1] - 0.25 * t[3] <= cy <= t[1] + 1.1 * t[3]:
                hit = j
                break
        if hit >= 0:
            used.add(hit)
        out.append(hit)
    return out
