"""Saving and loading FacePhi parts: safetensors weights beside a JSON metadata file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..models.files import load_into  # noqa: F401  (FacePhi parts load through it)
from ..models.lstm import ModelFileError

META = "model.json"
WEIGHTS = "weights.safetensors"


def weights_key(folder: str | Path) -> str:
    """16 hex digits of the sha256 of a part's weights file: names an encoder in feature caches and provenance."""
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()[:16]


def save_part(folder: str | Path, state: dict[str, torch.Tensor], meta: dict) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(folder / WEIGHTS))
    (folder / META).write_text(json.dumps(meta, indent=1))
    return folder


def load_part(folder: str | Path, what: str, rebuild: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state, meta); ModelFileError with one line when a file is missing or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    for p in (folder / META, folder / WEIGHTS):
        if not p.is_file():
            raise ModelFileError(f"{what} file {p} not found: rebuild it with `{rebuild}`")
    try:
        meta = json.loads((folder / META).read_text())
    except ValueError as e:
        raise ModelFileError(f"{what} metadata {folder / META} is corrupt ({e})") from None
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{what} weights {folder / WEIGHTS} are corrupt ({str(e).splitlines()[0][:100]})") from None
    return state, meta
