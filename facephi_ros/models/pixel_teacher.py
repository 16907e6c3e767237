"""The pixel teacher: a small CNN that reads a grey face crop and gives an embedding and class logits.

    face crop (any size, grey uint8) -> preprocess -> (B, 1, 48, 48)
        -> 4 blocks [conv3x3, BN, ReLU] x 2 (32 -> 64 -> 128 -> 256 channels, max-pool after the first 3)
        -> global average pool -> embedding (B, 256) -> dropout -> linear -> logits (B, 7)

Trained on the FER2013 training pixels by `python -m training.train_pixel_teacher`. Its soft labels
are distilled into the landmark models at training time; at run time only the face-mesh node's
opt-in appearance mode loads it (facephi_ros/appearance), on eye-aligned face crops. The
weights are one safetensors file whose header holds the architecture and the class list; loading
checks both and raises ModelFileError (one line) for a missing, corrupt or mismatching file.

    teacher = load_teacher()                        # models/pixel_teacher/pixel_teacher.safetensors
    emb, logits = teacher.encode(crops)             # crops: one (H, W) uint8 array or a list of them
    emb, logits = teacher.predict(crops)            # the same, logits averaged with the mirror image's
    emb, logits = teacher.forward_tta(x)            # preprocessed x: mean over mirror and two zooms (6 images)

Preprocessing is parameter-free: resize to 48x48, then standardise each image by its own mean and
standard deviation (so a camera's exposure matters less than it would with fixed constants).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..paths import shipped
from .files import load_into
from .lstm import ModelFileError

# FER2013's classes in the project's order: the sorted class-folder names that
# facephi_ros.data.image_folder.index_split gives, as in models/lstm_fer7/model.json.
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
INPUT_SIZE = 48
TTA_ZOOMS = (0.92, 1.08)  # forward_tta's zoom factors (zoom in 8%, out 8%)
WEIGHTS = "pixel_teacher.safetensors"
ARCH = "PixelTeacher"


def default_path() -> Path:
    return shipped("models") / "pixel_teacher" / WEIGHTS


@dataclass
class TeacherConfig:
    classes: list = field(default_factory=lambda: list(CLASSES))
    channels: list = field(default_factory=lambda: [32, 64, 128, 256])
    dropout: float = 0.4
    input_size: int = INPUT_SIZE

    @property
    def embedding_dim(self) -> int:
        return int(self.channels[-1])


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, 1, H, W) images resampled about their centre: factor < 1 zooms in, > 1 out (border
    pixels repeated)."""
    theta = torch.tensor([[factor, 0.0, 0.0], [0.0, factor, 0.0]], dtype=x.dtype, device=x.device).expand(len(x), 2, 3)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
              nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def preprocess(faces, size: int = INPUT_SIZE) -> torch.Tensor:
    """Face crop(s) -> float tensor (B, 1, size, size), each image standardised by its own mean and
    standard deviation. `faces`: one (H, W) grey uint8 array, one (H, W, 3) BGR array (OpenCV's and
    the camera topic's order), a list of such arrays (sizes may differ), or a (B, H, W) uint8 array."""
    import cv2

    if isinstance(faces, np.ndarray) and (faces.ndim == 2 or (faces.ndim == 3 and faces.shape[-1] == 3)):
        faces = [faces]
    out = np.empty((len(faces), size, size), np.float32)
    for i, f in enumerate(faces):
        f = np.asarray(f)
        if f.ndim == 3 and f.shape[-1] == 3:
            f = cv2.cvtColor(np.ascontiguousarray(f, np.uint8), cv2.COLOR_BGR2GRAY)
        if f.ndim != 2 or min(f.shape) < 1:
            raise ValueError(f"a face crop must be a (H, W) grey or (H, W, 3) BGR image, got shape {f.shape}")
        if f.shape != (size, size):
            shrink = f.shape[0] > size or f.shape[1] > size
            f = cv2.resize(np.ascontiguousarray(f), (size, size),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out[i] = f
    return standardise(torch.from_numpy(out)[:, None])


def standardise(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) pixel values (0-255, any float) -> per-image zero mean, unit standard deviation."""
    x = x.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / std.clamp_min(1.0)  # a flat crop (std < 1 grey level) is not blown up into noise


class PixelTeacher(nn.Module):
    def __init__(self, cfg: TeacherConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TeacherConfig()
        ch = [1] + list(cfg.channels)
        n = len(cfg.channels)
        self.features = nn.Sequential(*[_block(ch[i], ch[i + 1], pool=i < n - 1) for i in range(n)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embedding_dim, len(cfg.classes))

    @property
    def classes(self) -> list[str]:
        return list(self.cfg.classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: preprocessed (B, 1, 48, 48) -> (embedding (B, E), logits (B, C))."""
        emb = self.pool(self.features(x)).flatten(1)
        return emb, self.head(self.dropout(emb))

    def forward_mirrored(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time mirroring: embedding and logits averaged over x and its horizontal flip."""
        emb, logits = self(torch.cat([x, x.flip(-1)]))
        b = len(x)
        return (emb[:b] + emb[b:]) / 2, (logits[:b] + logits[b:]) / 2

    def forward_tta(self, x: torch.Tensor, zooms: Sequence[float] = TTA_ZOOMS) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time augmentation: embedding and logits averaged over x, its horizontal flip, and
        both again zoomed by each factor in `zooms` (1 + 2 * len(zooms) pairs; 6 images by default:
        chosen on validation, training/eval_pixel_teacher.py)."""
        views = [x] + [zoom(x, z) for z in zooms]
        b = len(x)
        emb, logits = self.forward_mirrored(torch.cat(views))
        return emb.view(len(views), b, -1).mean(0), logits.view(len(views), b, -1).mean(0)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, faces, mirror: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Face crop(s) (see preprocess) -> (embedding (B, E), logits (B, C)), in eval mode."""
        was = self.training
        self.eval()
        try:
            x = preprocess(faces, self.cfg.input_size).to(self._device())
            return self.forward_mirrored(x) if mirror else self(x)
        finally:
            self.train(was)

    def predict(self, faces, mirror: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """encode() with test-time mirroring on by default: logits are the mean of the image's and
        its mirror image's (softmax them for probabilities)."""
        return self.encode(faces, mirror=mirror)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_teacher(model: PixelTeacher, path: str | Path, extra: dict | None = None) -> Path:
    """float32 state dict as safetensors; the header holds the architecture, classes and `extra`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"arch": ARCH, "config": json.dumps(asdict(model.cfg)), "classes": json.dumps(model.classes),
            "extra": json.dumps(extra or {})}
    state = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_teacher(path: str | Path | None = None, device: str | torch.device = "cpu",
                 expect_classes: Sequence[str] | None = CLASSES) -> PixelTeacher:
    """Load the teacher (default: the committed weights) in eval mode; ModelFileError (one line) when
    the file is missing, corrupt, of another architecture or has another class list."""
    from safetensors import SafetensorError, safe_open

    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise ModelFileError(f"pixel teacher weights {path} not found: train them with "
                             "`python -m training.train_pixel_teacher` or pass the path of a .safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"pixel teacher weights {path} are corrupt ({str(e).splitlines()[0][:100]})") from None
    if meta.get("arch") != ARCH:
        raise ModelFileError(f"pixel teacher weights {path} are not a {ARCH} (header arch {meta.get('arch')!r})")
    try:
        cfg = TeacherConfig(**json.loads(meta["config"]))
        classes = json.loads(meta["classes"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"pixel teacher header in {path} is corrupt ({type(e).__name__}: {e})") from None
    if list(classes) != list(cfg.classes):
        raise ModelFileError(f"pixel teacher {path} is inconsistent: header classes {classes}, config {cfg.classes}")
    if expect_classes is not None and list(cfg.classes) != list(expect_classes):
        raise ModelFileError(f"pixel teacher {path} has classes {list(cfg.classes)}, expected {list(expect_classes)}")
    model = PixelTeacher(cfg)
    load_into(model, state, "pixel teacher", path, against="their header")
    model.meta = {k: json.loads(v) if k in ("config", "classes", "extra") else v for k, v in meta.items()}
    return model.to(device).eval()
