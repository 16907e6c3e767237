"""Moving frames composed from real face photos, for tracking tests and load benchmarks.

The faces are real (crops of photos found by the landmarker itself); only their placement is
synthetic, so ids, crossings and face counts are known exactly.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..landmarks.landmarker import Landmarker


def face_crops(images: list, height: int = 160, margin: float = 0.35) -> list[np.ndarray]:
    """RGB crops around every face found in each image (a path or an RGB array), resized to
    `height` pixels."""
    crops = []
    with Landmarker(video=False, num_faces=5) as lm:
        for k, path in enumerate(images):
            if isinstance(path, np.ndarray):
                rgb = path
                path = f"image #{k} ({rgb.shape[1]}x{rgb.shape[0]} array)"
            else:
                bgr = cv2.imread(str(path))
                if bgr is None:
                    raise FileNotFoundError(f"cannot read image {path}")
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            faces = lm.detect(rgb)
            if not faces:
                raise ValueError(f"no face found in {path}")
            for f in faces:
                x, y, w, h = f.bbox
                m = margin * max(w, h)
                x0, y0 = int(max(0, x - m)), int(max(0, y - m))
                x1, y1 = int(min(rgb.shape[1], x + w + m)), int(min(rgb.shape[0], y + h + m))
                crop = rgb[y0:y1, x0:x1]
                scale = height / crop.shape[0]
                crops.append(cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), height), interpolation=cv2.INTER_AREA))
    return crops


def paste(canvas: np.ndarray, crop: np.ndarray, cx: float, cy: float) -> None:
    """Paste `crop` centred at (cx, cy), clipped to the canvas."""
    h, w = crop.shape[:2]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    cx0, cy0 = max(0, -x0), max(0, -y0)
    x0c, y0c = max(0, x0), max(0, y0)
    x1c, y1c = min(canvas.shape[1], x0 + w), min(canvas.shape[0], y0 + h)
    if x1c > x0c and y1c > y0c:
        canvas[y0c:y1c, x0c:x1c] = crop[cy0:cy0 + (y1c - y0c), cx0:cx0 + (x1c - x0c)]


def crossing_frames(crop_a: np.ndarray, crop_b: np.ndarray, n: int = 90, size=(640, 480), gap: float = 1.05):
    """Yield (rgb frame, (centre_a, centre_b)): face A moves left to right, face B right to left,
    on rows `gap` face-heights apart, so that they pass each other mid-way."""
    w, h = size
    ha = max(crop_a.shape[0], crop_b.shape[0])
    ya, yb = h / 2 - gap * ha / 2, h / 2 + gap * ha / 2
    margin = max(crop_a.shape[1], crop_b.shape[1]) / 2 + 5
    for k in range(n):
        s = k / max(1, n - 1)
        xa = margin + s * (w - 2 * margin)
        xb = w - margin - s * (w - 2 * margin)
        frame = np.full((h, w, 3), 110, np.uint8)
        paste(frame, crop_a, xa, ya)
        paste(frame, crop_b, xb, yb)
        yield frame, ((xa, ya), (xb, yb))


def grid_frame(crops: list[np.ndarray], cols: int, size=(1280, 720), background: int = 110) -> np.ndarray:
    """All crops on one frame in a grid (for many-faces load tests)."""
    w, h = size
    rows = int(np.ceil(len(crops) / cols))
    frame = np.full((h, w, 3), background, np.uint8)
    for i, c in enumerate(crops):
        r, q = divmod(i, cols)
        paste(frame, c, (q + 0.5) * w / cols, (r + 0.5) * h / rows)
    return frame
