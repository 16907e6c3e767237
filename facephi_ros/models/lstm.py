"""The temporal emotion model: a per-frame encoder, an LSTM over a window of frames, a classifier.

    frames (B, T, D) -> MLP encoder -> (B, T, H) -> LSTM -> (B, T, H) -> linear -> logits (B, T, C)

The per-frame baseline is the same encoder and head with no LSTM (`temporal=False`), so the two
differ only in temporal context. Weights are stored as safetensors beside a JSON file holding the
architecture, the feature layout (FeatureConfig) and the class list; loading checks all three.

A model folder may hold an ensemble (EmotionEnsemble): several such models of one design, trained
apart with different seeds, whose class probabilities are averaged. It has the same interface
(encode, classify, step, forward), so the node and the evaluations run either.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..features.normalize import FeatureConfig

WEIGHTS = "weights.safetensors"
META = "model.json"


class ModelFileError(RuntimeError):
    """Missing, corrupt or mismatching model files; str() is one line."""


@dataclass
class LSTMConfig:
    classes: list
    features: dict = field(default_factory=lambda: FeatureConfig().to_dict())
    hidden: int = 256
    encoder_hidden: int = 512
    lstm_layers: int = 1
    dropout: float = 0.3
    temporal: bool = True
    window: int = 16  # frames the node integrates
    # input normalisation: "zscore" = per-feature standardisation with training-split statistics
    # (buffers saved with the weights); "layernorm" = a LayerNorm over each frame (the first models)
    input_norm: str = "layernorm"
    # the hybrid model's appearance input, appended to each frame's landmark features: {} for a
    # landmark-only model; else {"embedding_dim": E, "classes": [...], "teacher": ...}: the
    # pixel teacher's embedding (E values) then its logits (one per class), as the face-mesh node
    # publishes them in appearance mode (FaceLandmarks.appearance_embedding / appearance_logits)
    appearance: dict = field(default_factory=dict)

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.features)

    @property
    def appearance_dim(self) -> int:
        a = self.appearance or {}
        return int(a.get("embedding_dim", 0)) + len(a.get("classes", [])) if a else 0


class Standardize(nn.Module):
    """(x - mean) / std per feature, with the training split's statistics stored as buffers.

    Some inputs barely vary in training: on FER2013 faces MediaPipe's cheekSquint and noseSneer
    blendshapes stay below 1e-5. Divided by such a deviation, a value of 0.01 from a live camera
    would be thousands of deviations away. So each deviation is at least `MIN_STD` (below every
    landmark coordinate's deviation, about 0.016 at the least, so those are unchanged) and the
    result is clamped to +-`CLAMP`."""

    MIN_STD = 0.01
    CLAMP = 10.0

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(self.MIN_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-self.CLAMP, self.CLAMP)


class EmotionLSTM(nn.Module):
    def __init__(self, cfg: LSTMConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.feature_config.dim + cfg.appearance_dim
        if cfg.input_norm not in ("zscore", "layernorm"):
            raise ValueError(f"input_norm must be 'zscore' or 'layernorm', got {cfg.input_norm!r}")
        self.encoder = nn.Sequential(
            Standardize(d) if cfg.input_norm == "zscore" else nn.LayerNorm(d), nn.Dropout(cfg.dropout / 2),
            nn.Linear(d, cfg.encoder_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.encoder_hidden, cfg.hidden), nn.GELU(),
        )
        self.lstm = nn.LSTM(cfg.hidden, cfg.hidden, num_layers=cfg.lstm_layers, batch_first=True) if cfg.temporal else None
        self.head = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, len(cfg.classes)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def temporal(self, z: torch.Tensor) -> torch.Tensor:
        if self.lstm is None:
            return z
        out, _ = self.lstm(z)
        return out + z  # residual: the head sees the current frame and the integrated history

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Encodings (B, H) -> logits (B, C) with no temporal context (the per-frame model's output)."""
        return self.head(z)

    def step(self, z: torch.Tensor, hc=None) -> tuple[torch.Tensor, tuple]:
        """One frame of streaming: encodings z (B, H) and the LSTM state (None = zero) -> logits
        (B, C) after this frame and the new state; the same as forward() over the frames so far."""
        out, hc = self.lstm(z[:, None], hc)
        return self.head(out[:, -1] + z), hc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D) -> logits (B, T, C); a (B, D) input is one frame."""
        if x.dim() == 2:
            x = x[:, None]
        return self.head(self.temporal(self.encode(x)))


class EmotionEnsemble(nn.Module):
    """Several EmotionLSTMs of one configuration, trained apart (different seeds), run side by side;
    the output is the log of their mean class probability, so softmax() of it is that mean.

    The interface is EmotionLSTM's: encode() concatenates the members' encodings (B, M*H),
    classify() and step() split them again, and step()'s state is one (h, c) per member."""

    def __init__(self, members: list[EmotionLSTM]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = asdict(members[0].cfg)
        for m in members[1:]:
            if asdict(m.cfg) != first:
                raise ValueError("ensemble members must share one configuration (features, classes, sizes, window)")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    @staticmethod
    def combine(logits: list[torch.Tensor]) -> torch.Tensor:
        """Members' logits -> log of their mean probability (a valid logit vector for softmax)."""
        lp = torch.stack([torch.log_softmax(x, -1) for x in logits])
        return torch.logsumexp(lp, 0) - math.log(len(logits))

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return z.split(self.cfg.hidden, -1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode(x) for m in self.members], -1)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        return self.combine([m.classify(zi) for m, zi in zip(self.members, self._split(z))])

    def step(self, z: torch.Tensor, hc=None) -> tuple[torch.Tensor, tuple]:
        logits, states = [], []
        for i, (m, zi) in enumerate(zip(self.members, self._split(z))):
            lg, s = m.step(zi, None if hc is None else hc[i])
            logits.append(lg)
            states.append(s)
        return self.combine(logits), tuple(states)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine([m(x) for m in self.members])


def save_model(model: EmotionLSTM | EmotionEnsemble, folder: str | Path, extra: dict | None = None,
               half: bool = False) -> Path:
    """half: store the weights as float16 (halves the file; input statistics stay float32, and
    loading returns a float32 model)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def stored(k: str, v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        if half and v.is_floating_point() and not k.endswith((".mean", ".std")):
            v = v.half()
        return v.contiguous()

    save_file({k: stored(k, v) for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    meta = {"arch": type(model).__name__, "config": asdict(model.cfg), **(extra or {})}
    if isinstance(model, EmotionEnsemble):
        meta["members"] = len(model.members)
    if half:
        meta["weights_dtype"] = "float16"
    (folder / META).write_text(json.dumps(meta, indent=1))
    return folder


def load_model(folder: str | Path, expect_features: FeatureConfig | None = None,
               expect_classes: list | None = None) -> tuple[EmotionLSTM | EmotionEnsemble, dict]:
    """Load weights + metadata; ModelFileError (one line) when missing, corrupt or mismatching."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path, w_path = folder / META, folder / WEIGHTS
    for p in (meta_path, w_path):
        if not p.is_file():
            raise ModelFileError(f"emotion model file {p} not found: train one with `python -m training.train_lstm` "
                                 "or set model_dir to a folder holding model.json and weights.safetensors")
    try:
        meta = json.loads(meta_path.read_text())
        cfg = LSTMConfig(**meta["config"])
        members = int(meta.get("members", 1))
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"emotion model metadata {meta_path} is corrupt ({type(e).__name__}: {e})") from None
    if expect_features is not None and cfg.feature_config != expect_features:
        raise ModelFileError(f"emotion model {folder} expects features {cfg.features}, but the node computes "
                             f"{expect_features.to_dict()}: retrain or use matching feature settings")
    if expect_classes and list(expect_classes) != list(cfg.classes):
        raise ModelFileError(f"emotion model {folder} has classes {cfg.classes}, expected {list(expect_classes)}")
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"emotion model weights {w_path} are corrupt ({str(e).splitlines()[0][:100]})") from None
    model = EmotionEnsemble([EmotionLSTM(cfg) for _ in range(members)]) if members > 1 else EmotionLSTM(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ModelFileError(f"emotion model weights {w_path} do not match {meta_path} ({first[:140]})") from None
    model.eval()
    return model, meta
