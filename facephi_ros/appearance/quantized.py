"""The appearance network in int8: the same weights quantised after training, for CPUs with
PyTorch's x86 int8 kernels (ROS-free).

    net = load_int8(int8_path(float_path), float_path)    # a frozen TorchScript module: crops -> (emb, logits)

The int8 file is made from the float file by training/quantize_appearance.py: static
post-training quantisation (PyTorch's FX graph mode, the x86 backend's default settings: weights
per channel, activations from histograms), with activation ranges calibrated on training crops.
The model is then traced and frozen and saved with torch.jit. The file records the sha256 of the
float file it came from, and loading refuses an int8 file of other weights. On CPUs without
those kernels (ARM: PyTorch offers qnnpack, which has no per-channel weights) it cannot run, so
the caller falls back to the float network.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

INT8_ENGINES = ("x86", "fbgemm")
# kept in float: the first convolution (its one grey input channel in int8 cost 0.9 points of
# validation accuracy and 3% of argmax agreement with the float network) and the classifier;
# with both float the int8 network agrees with the float one on 98-99% of validation crops
FLOAT_MODULES = ("features.0.0", "head")
SOURCE_KEY = "source.json"


class Int8Unavailable(RuntimeError):
    """The int8 network cannot run here (no file, other weights, or no x86 int8 kernels): one line."""


def int8_path(float_path: str | Path) -> Path:
    p = Path(float_path)
    return p.with_name(p.stem + "_int8.pt")


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def engine() -> str | None:
    """The x86 int8 engine this PyTorch has, or None."""
    have = torch.backends.quantized.supported_engines
    return next((e for e in INT8_ENGINES if e in have), None)


def quantize(network: torch.nn.Module, calibration: torch.Tensor, batch: int = 256,
             keep_float: tuple = FLOAT_MODULES) -> torch.jit.ScriptModule:
    """Static int8 version of an eval-mode network of preprocessed (B, 1, S, S) inputs, with
    activation ranges from `calibration` (preprocessed inputs); the modules named in keep_float
    stay float."""
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    eng = engine()
    if eng is None:
        raise Int8Unavailable(f"this PyTorch has no x86 int8 kernels (engines: {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = eng
    example = calibration[:1]
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # FX quantisation's deprecation notices (torchao is its successor)
        mapping = get_default_qconfig_mapping(eng)
        for name in keep_float:
            mapping = mapping.set_module_name(name, None)
        prepared = prepare_fx(copy.deepcopy(network).eval(), mapping, (example,))
        for i in range(0, len(calibration), batch):
            prepared(calibration[i:i + batch])
        q = convert_fx(prepared)
        return torch.jit.freeze(torch.jit.trace(q, example, check_trace=False).eval())


def save_int8(module: torch.jit.ScriptModule, path: str | Path, float_path: str | Path, info: dict) -> Path:
    path = Path(path)
    meta = {"source_sha256": sha256_of(float_path), "source": Path(float_path).name, "engine": engine(), **info}
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(module, str(tmp), _extra_files={SOURCE_KEY: json.dumps(meta)})
    tmp.replace(path)
    return path


def load_int8(path: str | Path, float_path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """(module, its record); Int8Unavailable (one line) when it cannot or must not run here."""
    path = Path(path)
    if not path.is_file():
        raise Int8Unavailable(f"no int8 file {path.name} beside {Path(float_path).name}")
    eng = engine()
    if eng is None:
        raise Int8Unavailable(f"this CPU's PyTorch has no x86 int8 kernels ({torch.backends.quantized.supported_engines})")
    extra = {SOURCE_KEY: ""}
    torch.backends.quantized.engine = eng
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice: jit still works in the pinned torch
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[SOURCE_KEY] or "{}")
    except (RuntimeError, ValueError, OSError) as e:
        raise Int8Unavailable(f"int8 file {path} is corrupt ({str(e).splitlines()[0][:100]})") from None
    if meta.get("source_sha256") != sha256_of(float_path):
        raise Int8Unavailable(f"int8 file {path.name} was made from other weights than {Path(float_path).name}: "
                              "rebuild it with `python -m training.quantize_appearance`")
    return module.eval(), meta

