"""Frozen text encoder: all-MiniLM-L6-v2 from its PyPI wheel, mean-pooled, L2-normalised (384-d)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..assets import AssetError, require


class TextEncoder:
    def __init__(self, path: str | None = None, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        folder = require("minilm", path)
        try:
            self.tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as e:
            raise AssetError(f"cannot load the text encoder at {folder}: {str(e).splitlines()[0]}") from None
        self.device = device
        self.dim = self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, sentences: list[str], batch: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(sentences), batch):
            enc = self.tok(sentences[i:i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt").to(self.device)
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append(F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1))
        return torch.cat(out).cpu()
