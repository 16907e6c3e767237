"""Per-face rolling windows and the temporal model's inference (the node's whole logic, ROS-free).

Training puts the loss on every step of 16-frame sequences that start from a zero LSTM state,
so the model's output after any k <= 16 frames is what it was trained to give. Re-running the
LSTM over the last 16 frames at every frame would cost 16 steps per frame; instead each face
keeps two LSTM states that restart half a window apart, both advance one step per frame, and the
estimate comes from the one with the longer history: in steady state it integrates the last 9
to 16 frames (reported in window_frames), exactly as the model would over those frames, at the
cost of two steps. Faces not seen for `forget_after` seconds are dropped and at most
`max_faces` faces are kept: memory is bounded.

Faces that carry an appearance vector (the face-mesh node's opt-in appearance mode) go to the
hybrid model (the same LSTM design, with the vector appended to each frame's features), when
one is loaded and the vector's layout and classes are the ones it was trained on; every other
face goes to the landmark model. A face whose inputs change from one to the other restarts its
window.

The label of each estimate follows a calm rule over the probabilities (label_rule.LabelRule:
another class must lead the label in force until its lead summed over time reaches an evidence
threshold, optionally also by a margin for a minimum time); the probabilities are the model's
own, and `confidence` is the model's probability of the published label.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..features.normalize import FeatureConfig, frame_features
from ..models.lstm import ModelFileError, load_model
from ..paths import shipped
from .label_rule import LabelRule, LabelRuleConfig
from .valence_arousal import valence_arousal

DEFAULT_MODEL_DIR = shipped("models") / "lstm_fer7"
# shipped hybrid models; by default the one whose classes are the landmark model's is loaded
DEFAULT_HYBRID_DIRS = (shipped("models") / "lstm_hybrid_fer7", shipped("models") / "lstm_hybrid_fer3")


@dataclass
class Estimate:
    face_id: int
    probs: np.ndarray
    label: str
    confidence: float
    valence: float
    arousal: float
    window_frames: int
    model: str = ""  # the model that made it: the landmark model's name or the hybrid's


def model_name(model, folder) -> str:
    """The name estimates carry: 'lstm:<folder>' or 'frame:<folder>' (a per-frame model)."""
    return f"{'lstm' if model.cfg.temporal else 'frame'}:{Path(folder).name}"


class _State:
    __slots__ = ("hc", "count")

    def __init__(self):
        self.hc = None  # (h, c) of the LSTM, None = zero state
        self.count = 0  # frames integrated since the last restart


class _Window:
    __slots__ = ("states", "last_seen", "last_t", "model")

    def __init__(self, model=None):
        self.states: list[_State | None] = [_State(), None]
        self.last_seen = 0.0
        self.last_t = -np.inf
        self.model = model  # the model whose LSTM states these are

    @property
    def frames(self) -> int:
        return max(s.count for s in self.states if s is not None)


class EmotionEstimator:
    def __init__(self, model_dir: str | Path | None = None, window: int | None = None, forget_after: float = 2.0,
                 max_faces: int = 32, expect_classes: list[str] | None = None, threads: int = 1,
                 label_rule: LabelRuleConfig | None = None, hybrid_dir: str | Path | None = None):
        """label_rule: None = the shipped rule (LabelRuleConfig()); label_rule.ARGMAX = the argmax.
        hybrid_dir: the hybrid model for faces with an appearance vector; None = the shipped one with
        the landmark model's classes (none when no shipped one has them); "none" = no hybrid."""
        torch.set_num_threads(threads)
        self.rule = LabelRule(label_rule)
        self.model, self.meta = load_model(model_dir or DEFAULT_MODEL_DIR, expect_classes=expect_classes)
        self.cfg = self.model.cfg
        if self.cfg.appearance_dim:
            raise ModelFileError(f"{model_dir} is a hybrid model (it needs appearance vectors): give it as hybrid_dir")
        self.features: FeatureConfig = self.cfg.feature_config
        self.classes = list(self.cfg.classes)
        self.window = int(window or self.cfg.window)
        self.forget_after = forget_after
        self.max_faces = max_faces
        self.windows: OrderedDict[int, _Window] = OrderedDict()
        self.name = model_name(self.model, model_dir or DEFAULT_MODEL_DIR)
        self.hybrid, self.hybrid_name = self._load_hybrid(hybrid_dir)
        self.appearance_mismatch: str | None = None  # the last reason a face's vector was not used

    def _load_hybrid(self, hybrid_dir) -> tuple:
        if isinstance(hybrid_dir, str) and hybrid_dir.lower() == "none":
            return None, ""
        if hybrid_dir is None:
            for d in DEFAULT_HYBRID_DIRS:
                try:
                    classes = json.loads((d / "model.json").read_text())["config"]["classes"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # absent or unreadable: not a candidate
                if classes == self.classes:
                    hybrid_dir = d
                    break
            else:
                return None, ""
        model, _ = load_model(hybrid_dir, expect_features=self.features, expect_classes=self.classes)
        if not model.cfg.appearance_dim:
            raise ModelFileError(f"hybrid model {hybrid_dir} has no appearance input (a landmark-only model)")
        return model, model_name(model, hybrid_dir)

    def appearance_ok(self, vector: np.ndarray | None, classes: list[str] | None) -> bool:
        """Whether the hybrid model can read this appearance vector (embedding then logits of
        `classes`); when not, appearance_mismatch says why in one line."""
        if vector is None or self.hybrid is None:
            return False
        a = self.hybrid.cfg.appearance
        if list(classes or []) != list(a["classes"]) or vector.size != self.hybrid.cfg.appearance_dim:
            self.appearance_mismatch = (f"appearance vector of {vector.size} values for classes {list(classes or [])}: "
                                        f"the hybrid model {self.hybrid_name} reads {a['embedding_dim']} + "
                                        f"{len(a['classes'])} for {list(a['classes'])}; using the landmark model")
            return False
        return True

    def reset(self) -> None:
        """Forget every face (windows and labels)."""
        self.windows.clear()
        self.rule.clear()

    def forget(self, now: float | None = None) -> list[int]:
        now = time.monotonic() if now is None else now
        gone = [k for k, w in self.windows.items() if now - w.last_seen > self.forget_after]
        for k in gone:
            del self.windows[k]
        self.rule.forget(gone)
        return gone

    def _step(self, w: _Window, z: torch.Tensor, model) -> tuple[torch.Tensor, int]:
        """Advance a face's LSTM states by one frame encoding z (H,) of `model`; logits and frames integrated."""
        if not model.cfg.temporal:
            return model.classify(z[None])[0], 1
        half = max(1, self.window // 2)
        for s in w.states:
            if s is not None and s.count >= self.window:  # integrated a full window: restart
                s.hc, s.count = None, 0
        if w.states[1] is None and w.states[0].count == half:
            w.states[1] = _State()
        best, best_n = None, -1
        for s in w.states:
            if s is None:
                continue
            logits, s.hc = model.step(z[None], s.hc)
            s.count += 1
            if s.count > best_n:
                best, best_n = logits[0], s.count
        return best, best_n

    @torch.inference_mode()
    def update(self, faces: list[tuple], width: float, height: float, t: float, now: float | None = None) -> list[Estimate]:
        """One frame: faces = [(face_id, landmarks (478, 3), blendshapes (52,), matrix (4, 4))], each
        optionally followed by (appearance vector, its classes) from the appearance mode;
        t = the frame's time in seconds. Returns one estimate per face (Estimate.model names the
        model that made it)."""
        now = time.monotonic() if now is None else now
        self.forget(now)  # before use: a face id seen again after forget_after starts afresh
        if not faces:
            return []
        lm = np.stack([f[1] for f in faces])
        bs = np.stack([f[2] for f in faces])
        mat = np.stack([f[3] for f in faces])
        x = torch.from_numpy(frame_features(self.features, lm, bs, mat, width, height))
        hybrid = [len(f) > 4 and self.appearance_ok(f[4], f[5] if len(f) > 5 else None) for f in faces]
        models = [self.hybrid if h else self.model for h in hybrid]
        z = [None] * len(faces)  # (H,) per face: the per-frame part, once per frame and model
        for model in {id(m): m for m in models}.values():
            rows = [i for i, m in enumerate(models) if m is model]
            xi = x[rows]
            if model is self.hybrid:
                xi = torch.cat([xi, torch.from_numpy(np.stack([faces[i][4] for i in rows]).astype(np.float32))], -1)
            for i, zi in zip(rows, model.encode(xi)):
                z[i] = zi
        logits, lengths = [], []
        # oneDNN's LSTM costs over twice as much as the native kernel at batch size 1 here:
        # off, for this call only.
        prev = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            for (fid, *_), zi, model in zip(faces, z, models):
                w = self.windows.get(fid)
                if w is not None and w.model is not model:  # its inputs changed: start again
                    del self.windows[fid]
                    w = None
                if w is None:
                    w = self.windows[fid] = _Window(model)
                    while len(self.windows) > self.max_faces:
                        self.rule.forget([self.windows.popitem(last=False)[0]])
                self.windows.move_to_end(fid)
                w.last_seen, w.last_t = now, t
                lg, n = self._step(w, zi, model)
                logits.append(lg)
                lengths.append(n)
        finally:
            torch.backends.mkldnn.enabled = prev
        probs = torch.softmax(torch.stack(logits), -1)
        out = []
        for (fid, *_), p, n, h in zip(faces, probs.numpy(), lengths, hybrid):
            k = self.rule.update(fid, p, t)
            v, a = valence_arousal(p, self.classes)
            out.append(Estimate(fid, p, self.classes[k], float(p[k]), v, a, n, self.hybrid_name if h else self.name))
        return out
