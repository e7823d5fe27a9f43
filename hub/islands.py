"""float32 islands: part of a reduced-precision network kept in float32, with casts at its edges.

Networks with depthwise convolutions (EfficientNet, MobileNet, ConvNeXt...) lose more to
bfloat16 than dense ones: rounding the activations of their thin, high-resolution early
blocks to bf16's 8-bit mantissa accumulates through the network. An *island* keeps some
of the network's modules, with their weights, in float32 while the rest is cast to bf16:

* ``"early"`` (:func:`early_modules`): every module that runs before the feature maps first
  get coarser than 1/:data:`EARLY_STRIDE` of the input's side (the stem and the first
  blocks, at 1/2 and 1/4), found by one sizing forward of a single zero image;
* ``"depthwise"`` (:func:`depthwise_modules`): the depthwise convolutions only.

:func:`apply_islands` casts the rest of a float32 network to bf16 (the islands keep their
exact float32 weights, never rounded) and gives every module holding weights a pre-hook that
casts its floating inputs to its own weights' dtype, so the data crosses each island's edge
in the right precision whatever path the provider's forward takes (residual sums of a
float32 and a bf16 tensor are promoted by torch to float32, and cast down by the next
module). ``hub.load(..., islands=...)`` checks the option with :func:`check_islands` (so do
``hub extract --islands`` and dataset mode, before any work) and uses :func:`keep_islands`. Measured
(docs/extraction.md, "float32 islands"): ``"early"`` makes efficientnet_lite0 faithful
(cosine 0.9994 against float32) but no faster than float32 on a 2-core AMX Xeon, so
``dtype="auto"`` does not use islands by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.errors import InputError
from hub.plan import ISLANDS

if TYPE_CHECKING:
    import torch

    from hub.backbone import Backbone

__all__ = [
    "EARLY_STRIDE",
    "ISLANDS",
    "apply_islands",
    "cast_to_own_dtype",
    "check_islands",
    "depthwise_modules",
    "early_modules",
    "is_depthwise",
    "keep_islands",
]

#: ``"early"`` islands hold everything until the maps get coarser than 1/EARLY_STRIDE of the input
EARLY_STRIDE = 4


def check_islands(islands: str | None, *, modality: str, runtime: str | None = None) -> None:
    """Refuse an ``islands=`` option that :func:`hub.load` cannot honour: an unknown mode, a
    backbone that is not an image backbone (text, image-text), or a ``runtime`` (the checks of
    :func:`hub.plan.check_request`, for the doors that take the option before loading).

    :param modality: the backbone's modality (its manifest's).
    :raises InputError: with what to change.
    """
    from hub.plan import Facts, Request, check_request

    if islands is not None:
        check_request(Request(islands=islands), Facts(modality=modality, pretrained=True))
        if runtime is not None:
            check_request(Request(islands=islands, runtime=runtime),
                          Facts(modality=modality, pretrained=True))


def is_depthwise(m: torch.nn.Module) -> bool:
    """A 2-D convolution with one group per input channel."""
    import torch

    return isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


def _weighted(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Modules that hold floating parameters or buffers of their own (leaves, and e.g. a
    batch norm with an activation child), in registration order."""
    out = []
    for name, m in module.named_modules():
        own = [*m.parameters(recurse=False), *m.buffers(recurse=False)]
        if any(t.is_floating_point() for t in own):
            out.append((name, m))
    return out


def depthwise_modules(module: torch.nn.Module) -> list[str]:
    """The names of ``module``'s depthwise convolutions."""
    return [name for name, m in module.named_modules() if is_depthwise(m)]


def early_modules(module: torch.nn.Module, run: Callable[[torch.Tensor], Any], size: int, *,
                  stride: int = EARLY_STRIDE) -> list[str]:
    """The weighted modules that run before the first one whose NCHW output is coarser than
    1/``stride`` of the input's side, in the order they run.

    :param run: runs the network on an image batch ``(1, 3, size, size)`` (the provider's
        forward), called once on zeros in the dtype of the module's weights, under
        ``torch.inference_mode``.
    """
    import torch

    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)

    weighted = {m: name for name, m in _weighted(module)}
    order: dict[str, int | None] = {}  # name -> output side, in the order modules finish

    def record(m: torch.nn.Module, args: Any, out: Any) -> None:
        if weighted[m] not in order:  # a module called twice counts at its first call
            side = out.shape[-1] if isinstance(out, torch.Tensor) and out.ndim == 4 else None
            order[weighted[m]] = side

    handles = [m.register_forward_hook(record) for m in weighted]
    try:
        with torch.inference_mode():
            run(torch.zeros(1, 3, size, size, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    early = []
    for name, side in order.items():
        if side is not None and side * stride < size:
            break
        early.append(name)
    return early


def cast_to_own_dtype(m: torch.nn.Module, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """A forward pre-hook (``with_kwargs=True``) casting a module's floating tensor arguments to
    the dtype of its own weights, read at each call: a copy of the network cast back to float32
    (``as_module``, ``module.float()``) keeps working, its hooks then cast nothing. A
    module-level function, so hooked networks pickle."""
    import torch

    dtype = next((t.dtype for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]
                  if t.is_floating_point()), None)

    def off(a: Any) -> bool:
        return isinstance(a, torch.Tensor) and a.dtype != dtype and a.is_floating_point()

    if dtype is None or (not any(off(a) for a in args) and not any(off(v) for v in kwargs.values())):
        return None
    return (tuple(a.to(dtype) if off(a) else a for a in args),
            {k: v.to(dtype) if off(v) else v for k, v in kwargs.items()})


def apply_islands(module: torch.nn.Module, names: list[str], dtype: torch.dtype) -> list[Any]:
    """Cast a float32 module to ``dtype`` except the named modules, which keep their float32
    weights (exactly: they are never rounded), and cast each weighted module's inputs to its
    weights' dtype.

    :returns: the hook handles (``handle.remove()`` undoes the input casts, not the dtypes).
    :raises InputError: a name that is not a submodule.
    """
    kept: dict[str, Any] = {}
    for name in names:
        try:
            island = module.get_submodule(name)
        except AttributeError as exc:
            raise InputError(f"float32 island {name!r} is not a module of this network.") from exc
        for key, t in [*island.named_parameters(), *island.named_buffers()]:
            kept[f"{name}.{key}"] = t.data
    module.to(dtype)
    for key, t in [*module.named_parameters(), *module.named_buffers()]:
        if key in kept:
            t.data = kept[key]
    return [m.register_forward_pre_hook(cast_to_own_dtype, with_kwargs=True)
            for _, m in _weighted(module)]


def keep_islands(bb: Backbone, mode: str, dtype: torch.dtype, *,
                 stride: int = EARLY_STRIDE) -> tuple[str, ...]:
    """Cast a float32 image backbone's network (built, not yet configured) to ``dtype`` except
    its float32 islands: its early modules or its depthwise convolutions (see the module
    docstring). Returns the islands' names; :func:`hub.execution.apply_plan` records them in the
    backbone's plan (``bb.islands``), and inputs then enter the network in float32.

    :param stride: ``"early"``: the coarsest feature-map stride (relative to the input) kept.
    :raises InputError: an unknown mode, or a backbone that is not an image backbone.
    """
    if mode not in ISLANDS:
        raise InputError(f"float32 islands {mode!r}: choose one of {', '.join(ISLANDS)}.")
    pp = bb.spec.preprocessing.image
    if bb.modality != "image" or pp is None:
        raise InputError(f"{bb.name}: float32 islands apply to image backbones.")
    if mode == "depthwise":
        names = depthwise_modules(bb.module)
    else:
        last = list(bb.stage_specs)[-1]
        names = early_modules(bb.module, lambda x: bb.forward(x.to(bb.device), [last]), pp.size,
                              stride=stride)
    apply_islands(bb.module, names, dtype)
    return tuple(names)
