"""Per-face rolling windows and the temporal model's inference (the node's whole logic, ROS-free).

For every tracked face id a window of the last `window` per-frame encodings is kept (the
encoder runs once per frame; the LSTM reruns over the window, so its output depends on
exactly the last `window` frames, as in training). Faces not seen for `forget_after` seconds
are dropped, and at most `max_faces` windows exist: memory is bounded.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..features.normalize import FeatureConfig, frame_features
from ..models.lstm import load_model
from ..paths import shipped
from .valence_arousal import valence_arousal

DEFAULT_MODEL_DIR = shipped("models") / "lstm_fer7"


@dataclass
class Estimate:
    face_id: int
    probs: np.ndarray
    label: str
    confidence: float
    valence: float
    arousal: float
    window_frames: int


class _Window:
    __slots__ = ("frames", "last_seen", "last_t")

    def __init__(self, size: int):
        self.frames: deque = deque(maxlen=size)
        self.last_seen = 0.0
        self.last_t = -np.inf


class EmotionEstimator:
    def __init__(self, model_dir: str | Path | None = None, window: int | None = None, forget_after: float = 2.0,
                 max_faces: int = 32, expect_classes: list[str] | None = None, threads: int = 1):
        torch.set_num_threads(threads)
        self.model, self.meta = load_model(model_dir or DEFAULT_MODEL_DIR, expect_classes=expect_classes)
        self.cfg = self.model.cfg
        self.features: FeatureConfig = self.cfg.feature_config
        self.classes = list(self.cfg.classes)
        self.window = int(window or self.cfg.window)
        self.forget_after = forget_after
        self.max_faces = max_faces
        self.windows: OrderedDict[int, _Window] = OrderedDict()
        self.name = f"{'lstm' if self.cfg.temporal else 'frame'}:{Path(model_dir or DEFAULT_MODEL_DIR).name}"

    def forget(self, now: float | None = None) -> list[int]:
        now = time.monotonic() if now is None else now
        gone = [k for k, w in self.windows.items() if now - w.last_seen > self.forget_after]
        for k in gone:
            del self.windows[k]
        return gone

    @torch.no_grad()
    def update(self, faces: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], width: float, height: float,
               t: float, now: float | None = None) -> list[Estimate]:
        """One frame: faces = [(face_id, landmarks (478, 3), blendshapes (52,), matrix (4, 4))],
        t = the frame's time in seconds. Returns one estimate per face."""
        now = time.monotonic() if now is None else now
        if not faces:
            self.forget(now)
            return []
        lm = np.stack([f[1] for f in faces])
        bs = np.stack([f[2] for f in faces])
        mat = np.stack([f[3] for f in faces])
        x = torch.from_numpy(frame_features(self.features, lm, bs, mat, width, height))
        z = self.model.encode(x)  # (N, H): the per-frame part, once per frame
        seqs = []
        for (fid, *_), zi in zip(faces, z):
            w = self.windows.get(fid)
            if w is None:
                w = self.windows[fid] = _Window(self.window)
                while len(self.windows) > self.max_faces:
                    self.windows.popitem(last=False)
            self.windows.move_to_end(fid)
            w.frames.append(zi)
            w.last_seen, w.last_t = now, t
            seqs.append(torch.stack(list(w.frames)))
        lengths = [len(s) for s in seqs]
        if len(set(lengths)) == 1:
            probs = torch.softmax(self.model.head(self.model.temporal(torch.stack(seqs)))[:, -1], -1)
        else:
            probs = torch.cat([torch.softmax(self.model.head(self.model.temporal(s[None]))[:, -1], -1) for s in seqs])
        self.forget(now)
        out = []
        for (fid, *_), p, n in zip(faces, probs.numpy(), lengths):
            k = int(p.argmax())
            v, a = valence_arousal(p, self.classes)
            out.append(Estimate(fid, p, self.classes[k], float(p[k]), v, a, n))
        return out
