"""Weights into a module, with one clear line when they do not fit (shared by every model file)."""
from __future__ import annotations

from pathlib import Path

import torch

from .lstm import ModelFileError


def load_into(module: torch.nn.Module, state: dict, what: str, where: str | Path, against: str = "its metadata") -> None:
    """module.load_state_dict(state); a mismatch is a ModelFileError naming the first difference."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        lines = str(e).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise ModelFileError(f"{what} weights in {where} do not match {against} ({first[:140]})") from None
