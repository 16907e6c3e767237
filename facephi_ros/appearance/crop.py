"""The eye-aligned face crop the appearance model reads.

A similarity transform (rotation, uniform scale, shift) puts the two eye centres of a face's
landmarks where FER2013's 48x48 faces have them on average, so the crop looks like the images
the pixel teacher was trained on, whatever the face's size, position or in-plane roll:

    crop = aligned_crop(rgb_frame, landmarks)   # (48, 48) grey uint8

Eye centres are the midpoints of each eye's two corners (MediaPipe points 33/133 and 362/263),
which move with the head but not with the gaze. The template was measured on the 28,709 FER2013
training images (their landmarks from training/build_dataset.py mapped back to 48x48 pixels):
median eye centres at x = 15.2 and 32.8, y = 19.0, a level line 17.6 px long.

Coordinates: pixel (i, j) covers [j, j+1) x [i, i+1), so its centre is at (j + 0.5, i + 0.5);
landmarks are MediaPipe's normalised x, y times the frame's width, height. A face larger than the
crop is first sampled at up to 4x the crop's size and then shrunk with area averaging (no
aliasing); a small face is sampled bicubically, i.e. upscaled, as the landmarker's own crop is.
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 48
# eye centres in the 48x48 crop (pixel-edge coordinates, image left eye first: the subject's right)
TEMPLATE_EYES = np.array([[15.2, 19.0], [32.8, 19.0]], np.float64)
EYE_CORNERS = ((33, 133), (362, 263))  # subject's right eye (image left), subject's left eye
MAX_OVERSAMPLE = 4


def eye_centres(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(2, 2) pixel positions of the image-left and image-right eye centres of one face's
    normalised landmarks (478, 2 or 3)."""
    lm = np.asarray(landmarks, np.float64)
    pts = np.stack([(lm[a, :2] + lm[b, :2]) / 2 for a, b in EYE_CORNERS])
    return pts * [width, height]


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the similarity transform that maps the two points src (2, 2) onto dst (2, 2)."""
    s, d = src[1] - src[0], dst[1] - dst[0]
    ns = float(s @ s)
    if ns < 1e-12:
        raise ValueError("the two eye centres coincide")
    # complex division d / s: the rotation and scale in one number
    a = (d[0] * s[0] + d[1] * s[1]) / ns
    b = (d[1] * s[0] - d[0] * s[1]) / ns
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst[0] - rot @ src[0])[:, None]])


def crop_transform(landmarks: np.ndarray, width: int, height: int, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 matrix from frame pixel-edge coordinates to crop pixel-edge coordinates."""
    return similarity(eye_centres(landmarks, width, height), TEMPLATE_EYES * (size / CROP_SIZE))


def _to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) grey or (H, W, 3) RGB image, got shape {image.shape}")


def aligned_crop(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(size, size) grey uint8 crop of the face whose normalised landmarks (478, 2+) are given,
    from an (H, W, 3) RGB or (H, W) grey uint8 image; outside the frame is black."""
    grey = _to_grey(np.asarray(image))
    h, w = grey.shape
    m = crop_transform(landmarks, w, h, size)
    scale = float(np.hypot(m[0, 0], m[1, 0]))  # crop pixels per frame pixel
    over = int(min(MAX_OVERSAMPLE, max(1, np.ceil(1.0 / scale)))) if scale < 1 else 1
    m = m * over
    # pixel-edge to OpenCV's pixel-centre convention: x_c = x_e - 0.5 on both sides
    m[:, 2] += m[:, :2] @ [0.5, 0.5] - 0.5
    out = cv2.warpAffine(grey, m, (size * over, size * over), flags=cv2.INTER_LINEAR if over > 1 else cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if over > 1:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out
