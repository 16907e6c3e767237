"""Crop views: each frame shows a tracked face to MediaPipe a little differently, as the training
data shows each image.

The landmark models train on several renderings of every image (the dataset builder's views,
facephi_ros/data/image_folder.EXTRA_VIEWS: mirrored, framed tighter or wider, rolled), and the
evaluation's headline protocol shows each face as a stream of those renderings. MediaPipe's
errors differ from one rendering to the next, so a model that integrates a window of frames
gains from seeing more than one. A camera on a still face gives nearly the same image every
frame and so nearly the same errors. With `views`, the multi-face landmarker cuts a tracked
face's crop the next view's way on each frame (one landmarker pass per face and frame, as
before). A mirrored crop's mesh is mirrored back, so every view describes the face as the camera
shows it: landmarks, blendshapes and pose matrix keep their meaning, and full-image coordinates.
What a view changes is the landmarker's error, about 2% of the face's size.

Pure numpy; no ROS import.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features.normalize import mirror_face
from .landmarker import SMALL_IMAGE_PAD, FaceMesh


@dataclass(frozen=True)
class CropView:
    """flip: the crop is mirrored before the landmarker sees it. zoom: the crop's side times this
    (below 1 the face fills more of the landmarker's input)."""
    name: str
    flip: bool = False
    zoom: float = 1.0


def _zoom_for_pad(pad_fraction: float) -> float:
    """A builder view padded by pad_fraction (instead of SMALL_IMAGE_PAD) frames the face in a
    canvas (1 + 2 pad) image-widths wide: the crop's side scales by the same ratio."""
    return (1 + 2 * pad_fraction) / (1 + 2 * SMALL_IMAGE_PAD)


# The builder's views without a roll (zoom-in: padding 0.2, mirror-zoom-out: 0.3; a test checks
# these against EXTRA_VIEWS). A roll would also turn the published pose matrix.
CROP_VIEWS = {v.name: v for v in (
    CropView("plain"),
    CropView("mirror", flip=True),
    CropView("zoom-in", zoom=_zoom_for_pad(0.2)),
    CropView("mirror-zoom-out", flip=True, zoom=_zoom_for_pad(0.3)),
)}


def view_names(names) -> tuple[str, ...]:
    """A view list as names: a comma-separated string ("plain, mirror") or a sequence of names."""
    if isinstance(names, str):
        return tuple(n for n in names.replace(" ", "").split(",") if n)
    return tuple(names)


def parse_views(names) -> tuple[CropView, ...]:
    """The views named, in order (see view_names). ValueError, in one line, for an empty list or
    an unknown name."""
    names = view_names(names)
    unknown = [n for n in names if n not in CROP_VIEWS]
    if not names or unknown:
        raise ValueError(f"landmark_views must name one or more of {list(CROP_VIEWS)}, got {list(names)}")
    return tuple(CROP_VIEWS[n] for n in names)


def unflip(mesh: FaceMesh) -> FaceMesh:
    """A mesh found in a mirrored crop, as the unmirrored crop shows the face (crop-normalised
    coordinates; the box is recomputed by the caller)."""
    lm, bs, mat = mirror_face(mesh.landmarks, mesh.blendshapes, mesh.matrix)
    return FaceMesh(lm.astype(np.float32), bs.astype(np.float32), mat, mesh.bbox)


def flipped(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crop[:, ::-1])
