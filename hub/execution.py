"""How a built backbone runs: its device, its precision and its memory layout.

:func:`resolve_device` and :func:`resolve_dtype` turn ``hub.load``'s ``device`` and
``dtype`` options into torch objects (``dtype="auto"`` is decided by
:mod:`hub.autodtype`); :func:`precision_plan` chooses between casting the weights and
autocast for a reduced precision (:class:`Precision`);
:func:`wants_channels_last` decides the memory format from the share of the
parameters in convolutions (:func:`conv_fraction`). Keeping part of a bf16 network in
float32 is :mod:`hub.islands`' job. Building the module itself is
:mod:`hub.build`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["Precision", "conv_fraction", "dtype_name", "is_auto", "keeps_float32", "precision_plan",
           "resolve_device", "resolve_dtype", "wants_channels_last"]


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


def is_auto(dtype: Any) -> bool:
    """Whether ``dtype`` asks hub to choose (``"auto"``; see :mod:`hub.autodtype`)."""
    return isinstance(dtype, str) and dtype == "auto"


def dtype_name(dtype: torch.dtype | None) -> str:
    """``None`` -> ``"float32"``; a torch dtype -> its name (``"bfloat16"``)."""
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """``None``/``"float32"``/``"float16"``/``"bfloat16"`` (or torch dtypes) -> torch dtype
    (``None`` for float32). ``"auto"`` is resolved by :func:`hub.autodtype.auto_dtype`."""
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
    raise InputError(f"dtype={dtype!r} is not supported; use 'auto', float32, float16 or bfloat16.")


@dataclass(frozen=True)
class Precision:
    """How a backbone runs in a given dtype.

    :param dtype: what features come out in (``None`` = float32).
    :param weights: what the weights are cast to when built (``None`` = kept float32).
    :param autocast: the ``torch.autocast`` dtype of the forward, or ``None``.
    :param auto: chosen by ``dtype="auto"`` (features then come out in float32 whatever the
        network computes in).
    """

    dtype: torch.dtype | None
    weights: torch.dtype | None
    autocast: torch.dtype | None
    auto: bool = False

    @property
    def compute(self) -> str:
        """The precision the network computes in: ``"float32"``, ``"bfloat16"`` or ``"float16"``."""
        return dtype_name(self.autocast or self.weights)


def precision_plan(device: torch.device, dtype: torch.dtype | None, *, auto: bool = False) -> Precision:
    """Choose between casting the weights and autocast for a reduced precision.

    * float32: nothing to do.
    * bfloat16 (CPU and CUDA), float16 on CUDA: cast the weights once, as ``torch_dtype=``
      does in transformers. Every op of these backbones has a bf16 kernel on CPU (oneDNN:
      AMX / AVX512-BF16 where the CPU has them) and a half kernel on CUDA; norms, softmax and
      pooling accumulate in float32 inside those kernels. Measured on a CPU with AMX
      (docs/benchmarks.md): casting is 1.1-1.3x faster than autocast, whose per-op casts
      of float32 weights cost more than they save, and keeping the norms' weights in float32
      next to bf16 activations is slower still (mixed-dtype kernels).
    * float16 on CPU: autocast, weights stay float32. Without native fp16 matrix units the
      CPU's half kernels for norms, pooling and GELU are slow; only matmuls and convolutions
      run in float16.

    :param auto: the precision was chosen by ``dtype="auto"``: features are returned in
        float32 (pooled in float32 from the low-precision stages), so code written for
        float32 features keeps working.
    """
    import torch

    if dtype is None:
        return Precision(None, None, None, auto)
    out = None if auto else dtype
    if device.type == "cpu" and dtype == torch.float16:
        return Precision(out, None, dtype, auto)
    return Precision(out, dtype, None, auto)


def keeps_float32(module: torch.nn.Module) -> bool:
    """Whether ``dtype="auto"`` keeps this network in float32 even where bfloat16 is fast: it
    has depthwise convolutions (MobileNet, EfficientNet, ConvNeXt...). Measured on
    efficientnet_lite0's real weights (docs/extraction.md): bf16 activations through its thin
    high-resolution depthwise blocks drift to a pooled-embedding cosine of 0.997 against
    float32 (autocast: 0.998), below the 0.999 that "auto" promises; dense CNNs, ViTs and
    text transformers stay above it. float32 islands (``hub.load(..., islands="early")``,
    :mod:`hub.islands`) bring it to 0.9994 but measured no faster than float32 on a 2-core
    AMX Xeon (bf16 itself is only ~1.05x float32 there), so "auto" does not use them by
    itself. ``dtype="bfloat16"`` still runs such networks in bf16 on request.
    """
    import torch

    return any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
               for m in module.modules())


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
