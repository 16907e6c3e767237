"""FacePhi at run time: loads the shipped parts (encoder, projector, LoRA adapter) onto the LLM
and answers for faces given as raw MediaPipe arrays. ROS-free; used by the node, the evaluation
and the benchmark.

    rt = FacePhiRuntime()                       # models/facephi + the SmolLM2 asset
    probs = rt.label([(landmarks, matrix, blendshapes)], width, height)   # (N, C) class distribution
    text = rt.answer([(landmarks, matrix, blendshapes)], width, height)   # one sentence per face
    feat = rt.pooled_features([(lm1, m1, b1), (lm2, m2, b2), ...], w, h)  # one face's last frames -> (1, D)

A face is (landmarks (478, 3) as MediaPipe gives them, transformation matrix (4, 4), blendshapes
(52,)). A model without an expression input (`expression/`, docs/facephi.md) reads the landmarks
alone and takes (landmarks, matrix) pairs too.

Pooling: the encoder is cheap next to the LLM, so a face's last few frames can all be encoded
and their features averaged before the LLM reads them (the landmarker's frame-to-frame jitter
averages out; training and evaluation do the same over renderings of one image).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.sequences import mean_over_found, mirror_normalized_landmarks
from ..features.normalize import normalize_landmarks
from ..models.lstm import ModelFileError
from ..paths import shipped
from .encoder import load_encoder
from .expression import ExpressionEncoder
from .files import weights_key
from .llm import device_for, load_llm, pick_dtype
from .model import FacePhi, load_projector


POOL_FRAMES = 6  # the facephi node's default pool_frames (frames averaged per answer)


def projector_input(encoder, expression: ExpressionEncoder | None, norm_lm, blendshapes=None, mirror: bool = False,
                    desc: str = "") -> torch.Tensor:
    """(N, D) what the projector reads for (N, 478, 3) normalised landmarks and (N, 52) blendshapes:
    the encoder feature, then the expression embedding when the model has one (mirror=True: of each
    face's mirror image; desc: a progress bar for the encoder)."""
    lm = mirror_normalized_landmarks(torch.as_tensor(np.asarray(norm_lm, np.float32))).numpy() if mirror else norm_lm
    feat = encoder.encode(lm, desc=desc)
    if expression is None:
        return feat
    if blendshapes is None:
        raise ValueError("this FacePhi model reads blendshapes beside the landmarks: none were given")
    return torch.cat([feat, expression.encode_normalized(norm_lm, blendshapes, mirror=mirror)], 1)


def pooled_view_input(encoder, expression: ExpressionEncoder | None, view_lm: np.ndarray, view_bs: np.ndarray | None,
                      view_found: np.ndarray) -> torch.Tensor:
    """(N, D): projector_input averaged over the renderings in which each face was found
    (view_lm (N, V, 478, 3) normalised, view_bs (N, V, 52), view_found (N, V))."""
    n, v = view_found.shape
    bs = view_bs.reshape(n * v, -1) if view_bs is not None else None
    feat = projector_input(encoder, expression, view_lm.reshape(n * v, *view_lm.shape[2:]), bs).view(n, v, -1)
    return mean_over_found(feat, torch.as_tensor(view_found))


def default_model_dir() -> Path:
    return shipped("models") / "facephi"


class FacePhiRuntime:
    def __init__(self, model_dir: str | Path | None = None, llm: str = "", device: str = "auto", threads: int = 0,
                 dtype: str = "auto"):
        if threads:
            torch.set_num_threads(threads)
        folder = Path(model_dir or default_model_dir())
        if not folder.is_dir():
            raise ModelFileError(f"FacePhi model folder {folder} not found: rebuild it with `python -m training.train_facephi`")
        self.folder = folder
        self.device = device_for(device)
        self.encoder, _ = load_encoder(folder / "encoder")
        projector, meta = load_projector(folder / "projector")
        self.expression = None
        if projector.cfg.expression_dim:
            self.expression = ExpressionEncoder(folder / "expression")
            if self.expression.dim != projector.cfg.expression_dim or \
                    self.encoder.out_dim + self.expression.dim != projector.cfg.in_dim:
                raise ModelFileError(f"FacePhi parts in {folder} do not fit: the projector reads {projector.cfg.in_dim} "
                                     f"numbers, the encoder gives {self.encoder.out_dim} and the expression model "
                                     f"{self.expression.dim}: retrain the projector (python -m training.train_facephi)")
            if meta.get("expression_key") and weights_key(folder / "expression") != meta["expression_key"]:
                raise ModelFileError(f"FacePhi expression model in {folder / 'expression'} is not the one its projector was "
                                     "trained on (weights differ): restore it or retrain (python -m training.train_facephi)")
        llm_name = llm or projector.cfg.llm
        if (folder / "llm").is_dir():  # a full fine-tune ships the whole LLM
            llm_name = str(folder / "llm")
        self.dtype = pick_dtype(dtype, self.device)  # LLM weights; encoder and projector stay float32
        lm, tok = load_llm(llm_name, device=str(self.device), dtype=self.dtype)
        if (folder / "adapter").is_dir():
            try:
                from peft import PeftModel
                lm = PeftModel.from_pretrained(lm, str(folder / "adapter")).eval()
                lm.merge_adapter()  # LoRA folded into the weights (faster); disable_adapter() still gives the base LLM
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise ModelFileError(f"FacePhi adapter in {folder / 'adapter'} cannot be loaded: {str(e).splitlines()[0][:160]}") from None
        self.model = FacePhi(lm, tok, projector.to(self.device), self.encoder.to(self.device)).eval()
        self.classes = self.model.classes
        self.name = f"facephi:{Path(llm_name).name}"
        self.meta = meta
        self.model.prefix_cache(self.default_instruction)  # computed once, reused for every face

    @property
    def default_instruction(self) -> str:
        from .prompts import DEFAULT_INSTRUCTION, INSTRUCTIONS
        return INSTRUCTIONS[DEFAULT_INSTRUCTION]

    def features_from_normalized(self, norm_lm: np.ndarray, blendshapes: np.ndarray | None = None) -> torch.Tensor:
        """(N, D) projector inputs from (N, 478, 3) normalised landmarks and (N, 52) blendshapes."""
        return projector_input(self.encoder, self.expression, norm_lm, blendshapes)

    def features(self, faces: list[tuple], width: float = 1.0, height: float = 1.0) -> torch.Tensor:
        """faces = [(landmarks (478, 3) as MediaPipe gives them, transformation matrix (4, 4)[, blendshapes (52,)])]."""
        lm = np.stack([normalize_landmarks(f[0], f[1], width, height) for f in faces])
        bs = np.stack([np.asarray(f[2], np.float32) for f in faces]) if all(len(f) > 2 for f in faces) else None
        if not np.isfinite(lm).all() or (bs is not None and not np.isfinite(bs).all()):
            raise ValueError("landmarks or blendshapes are not finite after normalisation")
        return self.features_from_normalized(lm, bs)

    def pooled_features(self, frames: list[tuple], width: float = 1.0, height: float = 1.0) -> torch.Tensor:
        """(1, D): the mean feature of one face's frames [(landmarks, matrix, blendshapes), ...]."""
        if not frames:
            raise ValueError("no frames to pool")
        return self.features(frames, width, height).mean(0, keepdim=True)

    def view_features(self, view_lm: np.ndarray, view_bs: np.ndarray, view_found: np.ndarray) -> torch.Tensor:
        """(N, D): the mean feature over the renderings in which each face was found (evaluation's
        counterpart of pooled_features; see pooled_view_input)."""
        return pooled_view_input(self.encoder, self.expression, view_lm, view_bs, view_found)

    def label(self, faces, width: float = 1.0, height: float = 1.0) -> np.ndarray:
        return self.model.class_probs(self.features(faces, width, height)).cpu().numpy()

    def answer(self, faces, width: float = 1.0, height: float = 1.0, max_new_tokens: int = 16) -> list[str]:
        return self.model.generate(self.features(faces, width, height), max_new_tokens=max_new_tokens)

    def describe_va(self, valence: float, arousal: float, label: str, blendshapes: dict[str, float],
                    max_new_tokens: int = 40) -> str:
        return self.model.describe_va(valence, arousal, label, blendshapes, max_new_tokens)
