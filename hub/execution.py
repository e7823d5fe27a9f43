"""How a built backbone runs: its device, its precision and its memory layout.

:func:`resolve_device` and :func:`resolve_dtype` turn ``hub.load``'s ``device`` and
``dtype`` options into torch objects; :func:`precision_plan` chooses between casting
the weights and autocast for a reduced precision (:class:`Precision`);
:func:`wants_channels_last` decides the memory format from the share of the
parameters in convolutions (:func:`conv_fraction`). Building the module itself is
:mod:`hub.build`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["Precision", "conv_fraction", "precision_plan", "resolve_device", "resolve_dtype",
           "wants_channels_last"]


def resolve_device(device: Any) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; validates CUDA indices."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda:N'.") from exc
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device={device!r}: backbone-hub runs on 'cpu' and 'cuda:N'.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device={device!r} asks for CUDA, but torch sees no CUDA device. "
                             "Use device='cpu' or 'auto'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device={device!r}: only {torch.cuda.device_count()} CUDA devices "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """``None``/``"float32"``/``"float16"``/``"bfloat16"`` (or torch dtypes) -> torch dtype."""
    import torch

    if dtype is None:
        return None
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16}
    if isinstance(dtype, torch.dtype) and dtype in table.values():
        return None if dtype == torch.float32 else dtype
    if isinstance(dtype, str) and dtype in table:
        return None if table[dtype] == torch.float32 else table[dtype]
    raise InputError(f"dtype={dtype!r} is not supported; use float32, float16 or bfloat16.")


@dataclass(frozen=True)
class Precision:
    """How a backbone runs in a given dtype.

    :param dtype: what features come out in (``None`` = float32).
    :param weights: what the weights are cast to when built (``None`` = kept float32).
    :param autocast: the ``torch.autocast`` dtype of the forward, or ``None``.
    """

    dtype: torch.dtype | None
    weights: torch.dtype | None
    autocast: torch.dtype | None


def precision_plan(device: torch.device, dtype: torch.dtype | None) -> Precision:
    """Choose between casting the weights and autocast for a reduced precision.

    * float32: nothing to do.
    * CUDA, float16/bfloat16: cast the weights. Every op of these backbones has a
      half-precision CUDA kernel, and norms and softmax accumulate in float32 inside
      it; casting once is faster than autocast's per-op casts, and is what
      ``torch_dtype=`` does in transformers.
    * CPU, float16/bfloat16: autocast, weights stay float32. CPU kernels for half
      types are missing or slow for many ops (norms, pooling, GELU), so only the
      matmuls and convolutions run in the low precision, where oneDNN has kernels.
    """
    if dtype is None:
        return Precision(None, None, None)
    if device.type == "cuda":
        return Precision(dtype, dtype, None)
    return Precision(dtype, None, dtype)


def wants_channels_last(module: torch.nn.Module, modality: str, requested: bool | None) -> bool:
    """Whether to run in the channels_last memory format.

    ``requested`` wins when given. Automatic (``None``): on for image backbones whose
    parameters are mostly in 2-D convolutions (CNNs), where oneDNN on CPU and cuDNN
    on GPU run convolutions faster in NHWC; off for token models (ViT, Swin) and
    text, whose compute is in matmuls.
    """
    if requested is not None:
        if requested and modality != "image":
            raise InputError("channels_last applies to image backbones.")
        return bool(requested)
    if modality != "image":
        return False
    return conv_fraction(module) >= 0.5


def conv_fraction(module: torch.nn.Module) -> float:
    """The share of a module's parameters that sit in 2-D convolutions (0 for none)."""
    import torch

    total = conv = 0
    for m in module.modules():
        own = sum(p.numel() for p in m.parameters(recurse=False))
        total += own
        if isinstance(m, torch.nn.Conv2d):
            conv += own
    return conv / total if total else 0.0
