"""The appearance model the face-mesh node runs in appearance mode: the appearance network, loaded
from its one committed weights file, on aligned face crops (crop.py). Each face gets the network's
embedding and its class logits, as numbers.

The network is the pixel teacher (facephi_ros/models/pixel_teacher.py: its architecture, its file
format and its weights as the start) fine-tuned on the aligned crops themselves by
training/train_appearance.py, since the teacher learnt on FER2013's own framing and loses points on
these crops (docs/appearance.md). Any file of the teacher's format can be given instead.

    model = AppearanceModel()                  # models/appearance/appearance.safetensors
    model.precision                            # 'int8' (appearance_int8.pt, x86 CPUs) or 'float'
    emb, logits = model(rgb_frame, [landmarks_of_face_1, landmarks_of_face_2])   # (F, 256), (F, 7)

precision 'auto' (the default) runs the int8 version of the same weights (quantized.py) where
its file is present and the CPU has PyTorch's x86 int8 kernels, and the float network otherwise;
'int8' insists (ModelFileError when it cannot), 'float' never uses it. The float network is traced
and frozen with torch.jit (batch norms folded into the convolutions, oneDNN kernels): the same
numbers to float rounding, faster than eager. docs/results/appearance.json has the measured
costs and the accuracy of both precisions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.pixel_teacher import CLASSES, load_teacher, standardise
from ..paths import shipped
from .crop import CROP_SIZE, aligned_crop

PRECISIONS = ("auto", "int8", "float")


def default_path() -> Path:
    return shipped("models") / "appearance" / "appearance.safetensors"


class AppearanceModel:
    def __init__(self, path: str | Path | None = None, precision: str = "auto"):
        from ..models.lstm import ModelFileError
        from .quantized import Int8Unavailable, int8_path, load_int8

        if precision not in PRECISIONS:
            raise ModelFileError(f"appearance precision must be one of {PRECISIONS}, got {precision!r}")
        path = Path(path) if path else default_path()
        if not path.is_file():
            raise ModelFileError(f"appearance network weights {path} not found: build them with "
                                 "`python -m training.train_appearance` or give appearance_model a .safetensors file")
        self.network = load_teacher(path)  # ModelFileError (one line) for a corrupt or mismatching file
        self.size = int(self.network.cfg.input_size)
        if self.size != CROP_SIZE:
            raise ModelFileError(f"the appearance model reads {self.size}x{self.size} crops; the aligned crop is "
                                 f"{CROP_SIZE}x{CROP_SIZE}")
        self.classes = self.network.classes
        self.embedding_dim = self.network.cfg.embedding_dim
        self.precision, self.int8_note = "float", ""
        if precision != "float":
            try:
                self.net, _ = load_int8(int8_path(path), path)
                self.precision = "int8"
            except Int8Unavailable as e:
                if precision == "int8":
                    raise ModelFileError(f"appearance precision int8: {e}") from None
                self.int8_note = str(e)  # auto: the float network, and this says why
        if self.precision == "float":
            self.net = self._optimized()

    def _optimized(self):
        import warnings

        # torch.jit is deprecated in favour of torch.compile, which needs a C++ toolchain and
        # tens of seconds at start: jit still works and is what the measured figures use
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore", DeprecationWarning)
            example = torch.zeros(1, 1, self.size, self.size)
            traced = torch.jit.trace(self.network, example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def crops(self, image: np.ndarray, faces_landmarks) -> np.ndarray:
        """(F, 48, 48) uint8 aligned crops of each face (normalised landmarks (478, 2+) each)."""
        return np.stack([aligned_crop(image, lm, self.size) for lm in faces_landmarks]) if len(faces_landmarks) else \
            np.zeros((0, self.size, self.size), np.uint8)

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, 48, 48) uint8 crops -> (embedding (F, E), logits (F, C)) float32 numpy arrays."""
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), np.float32), np.zeros((0, len(self.classes)), np.float32)
        x = standardise(torch.from_numpy(np.ascontiguousarray(crops, np.uint8))[:, None])
        emb, logits = self.net(x)
        return emb.numpy().astype(np.float32), logits.numpy().astype(np.float32)

    def __call__(self, image: np.ndarray, faces_landmarks) -> tuple[np.ndarray, np.ndarray]:
        return self.embed_crops(self.crops(image, faces_landmarks))


__all__ = ["AppearanceModel", "CLASSES"]
