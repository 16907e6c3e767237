"""sensor_msgs/Image <-> numpy without cv_bridge (PyPI's cv-bridge is broken with numpy 2).

Works on the message's fields, so it needs no ROS import. Every failure is an ImageError with
one line that says what was wrong.
"""
from __future__ import annotations

import numpy as np

# encoding -> (channels, dtype, conversion to RGB)
_ENCODINGS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "8UC1": (1, np.uint8),
    "8UC3": (3, np.uint8),  # OpenCV's default: BGR
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
MAX_PIXELS_DEFAULT = 4096 * 4096


class ImageError(ValueError):
    """An image that cannot be used; str() is one line."""


def image_to_rgb(encoding: str, height: int, width: int, step: int, data, max_pixels: int = MAX_PIXELS_DEFAULT) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array (a copy only where a conversion needs one)."""
    if encoding not in _ENCODINGS:
        raise ImageError(f"unsupported image encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image ({width}x{height})")
    if height * width > max_pixels:
        raise ImageError(f"image too large ({width}x{height} > {max_pixels} pixels); scale it down at the source")
    channels, dtype = _ENCODINGS[encoding]
    row = width * channels * np.dtype(dtype).itemsize
    if step < row:
        raise ImageError(f"step {step} is smaller than a row of {width} {encoding} pixels ({row} bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * (height - 1) + row:
        raise ImageError(f"image data has {buf.size} bytes, {width}x{height} {encoding} with step {step} needs {step * height}")
    if buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)
    else:  # the last row may be unpadded
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, step), strides=(step, 1))
    img = rows[:, :row].reshape(height, width, channels)
    if encoding == "rgb8":
        return img
    if encoding in ("bgr8", "8UC3"):
        return np.ascontiguousarray(img[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(img[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.repeat(img, 3, axis=2)  # mono


def rgb_to_image_fields(img: np.ndarray, encoding: str = "rgb8") -> dict:
    """Fields of a sensor_msgs/Image for an (H, W, 3) uint8 array in `encoding` order (rgb8 or bgr8)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ImageError(f"expected an HxWx3 uint8 array, got {img.shape} {img.dtype}")
    if encoding not in ("rgb8", "bgr8"):
        raise ImageError(f"can only write rgb8 or bgr8, not {encoding}")
    h, w = img.shape[:2]
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * 3,
        "data": np.ascontiguousarray(img).tobytes(),
    }
