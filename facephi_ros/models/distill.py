"""Knowledge distillation from the pixel teacher into the landmark models (training time only).

The teacher (facephi_ros.models.pixel_teacher) sees the face's pixels; the landmark models see
landmarks and blendshapes only. Its class probabilities carry what a single hard label cannot:
that a face is "mostly neutral, a little sad". The student learns from both:

    loss = alpha * CE(student, label) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton, Vinyals and Dean, 2015). T^2 keeps the soft term's gradients on the scale of the hard
term's. Teacher targets are stored as logits per training image (TeacherTargets) and looked up
by image index, so that synthetic sequences that switch from one image to another at some frame
get the right image's targets frame by frame. No node imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                      alpha: float = 0.5, temperature: float = 2.0, weight: torch.Tensor | None = None,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (N, C), labels (N,), teacher_logits (N, C) or None (then plain cross-entropy).
    alpha: share of the hard-label term (1: no distillation; 0: teacher only)."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"alpha must be within [0, 1] and temperature > 0 (got {alpha}, {temperature})")
    hard = F.cross_entropy(logits, labels, weight=weight, label_smoothing=label_smoothing)
    if teacher_logits is None or alpha == 1.0:
        return hard
    if teacher_logits.shape != logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} do not match the student's {tuple(logits.shape)}")
    t = temperature
    soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1), log_target=True,
                    reduction="batchmean") * t * t
    return alpha * hard + (1 - alpha) * soft


@dataclass
class TeacherTargets:
    """The teacher's logits for every image of a split, in the feature file's order."""
    logits: np.ndarray  # (N, C) float32
    paths: np.ndarray  # (N,) the images, as in the feature file
    classes: list[str]
    provenance: dict

    def save(self, path: str | Path) -> Path:
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, logits=self.logits.astype(np.float32), paths=self.paths, classes=np.array(self.classes),
                            provenance=json.dumps(self.provenance))
        return path

    @classmethod
    def load(cls, path: str | Path, paths: np.ndarray, classes: list[str]) -> "TeacherTargets":
        """Targets for exactly these images (rows) and classes (columns: the teacher's logits of
        those classes, e.g. happy / sad / neutral out of seven). ValueError when an image or a
        class is missing from the file."""
        import json

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `python -m training.teacher_targets`")
        d = np.load(path)
        src = [str(c) for c in d["classes"]]
        missing = [c for c in classes if c not in src]
        if missing:
            raise ValueError(f"teacher targets {path} have no logits for classes {missing} (they have {src})")
        row = {str(p): i for i, p in enumerate(d["paths"])}
        rows = [row.get(str(p), -1) for p in paths]
        if -1 in rows:
            raise ValueError(f"teacher targets {path} lack {rows.count(-1)} of the feature file's images: rebuild them "
                             "with `python -m training.teacher_targets`")
        cols = [src.index(c) for c in classes]
        return cls(d["logits"][np.ix_(rows, cols)], np.asarray(paths), list(classes), json.loads(str(d["provenance"])))
