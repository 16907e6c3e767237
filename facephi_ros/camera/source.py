"""OpenCV frame source: a camera device (index or /dev path), a stream URL or a video file.

Live sources (devices, URLs) reconnect when they disappear; files end or loop. Errors that will
not fix themselves (a missing file) raise SourceError with one line.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np


class SourceError(RuntimeError):
    pass


def describe_source(source: str) -> tuple[str, object]:
    """('device', int) | ('device', '/dev/..') | ('url', str) | ('file', path)."""
    s = str(source).strip()
    if s.lstrip("-").isdigit():
        return "device", int(s)
    if s.startswith("/dev/"):
        return "device", s
    if "://" in s:
        return "url", s
    return "file", s


class FrameSource:
    def __init__(self, source: str, width: int = 0, height: int = 0, fps: float = 0.0, loop: bool = False):
        self.kind, self.target = describe_source(source)
        self.source = str(source)
        self.width, self.height, self.loop = width, height, loop
        self.requested_fps = fps
        self.cap: cv2.VideoCapture | None = None
        self.frames_read = 0
        if self.kind == "file":
            p = Path(self.target)
            if not p.is_file():
                raise SourceError(f"cannot open video file {p}: no such file")
            if not os.access(p, os.R_OK):
                raise SourceError(f"cannot open video file {p}: not readable")
        self.open()
        if self.kind == "file" and self.cap is None:
            raise SourceError(f"cannot open video file {self.target}: OpenCV could not decode it")

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def open(self) -> bool:
        self.release()
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            return False
        if self.live:
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.requested_fps:
                cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        self.cap = cap
        return True

    @property
    def fps(self) -> float:
        if self.requested_fps > 0:
            return self.requested_fps
        native = self.cap.get(cv2.CAP_PROP_FPS) if self.cap is not None else 0.0
        return native if 1.0 <= native <= 240.0 else 30.0

    def read(self) -> np.ndarray | None:
        """Next BGR frame, resized to width x height when set; None at the end of a file or when a
        live source is gone (call open() to reconnect)."""
        if self.cap is None:
            return None
        ok, frame = self.cap.read()
        if (not ok or frame is None) and self.kind == "file" and self.loop and self.frames_read > 0:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        if not ok or frame is None or frame.size == 0:
            return None
        self.frames_read += 1
        if (self.width and frame.shape[1] != self.width) or (self.height and frame.shape[0] != self.height):
            w = self.width or int(round(frame.shape[1] * self.height / frame.shape[0]))
            h = self.height or int(round(frame.shape[0] * self.width / frame.shape[1]))
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        return frame

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class Pacer:
    """Sleeps so that successive ticks are 1/rate apart (no drift, no catch-up bursts)."""

    def __init__(self, rate: float):
        self.period = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    def wait(self) -> None:
        if self.period <= 0:
            return
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self.next = time.monotonic()
