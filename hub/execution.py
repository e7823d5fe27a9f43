"""How a built backbone runs: its device, its precision and its memory layout.

:func:`resolve_device` turns ``hub.load``'s ``device`` option into a torch device;
:func:`network_facts` reads what the plan needs from a built network (depthwise convolutions:
:func:`keeps_float32`; the share of parameters in convolutions, :func:`conv_fraction`, for
channels_last); :func:`apply_plan` carries out the
:class:`hub.plan.ExecutionPlan` (:mod:`hub.plan` decides: dtype, autocast or cast, folding,
islands, runtime, layout, compile) on a freshly built backbone. Keeping part of a bf16 network
in float32 is :mod:`hub.islands`' job; building the module itself is :mod:`hub.build`'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

    from hub.config import Settings
    from hub.plan import ExecutionPlan, Facts
    from hub.provider import Provider
    from hub.twotower import AnyBackbone

__all__ = ["apply_plan", "conv_fraction", "keeps_float32", "network_facts", "resolve_device"]


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


def network_facts(facts: Facts, module: torch.nn.Module) -> Facts:
    """``facts`` completed with the built network's own, which the plan reads: ``depthwise``
    (:func:`keeps_float32`) and ``mostly_conv`` (:func:`conv_fraction` >= 0.5)."""
    import dataclasses

    return dataclasses.replace(facts, depthwise=keeps_float32(module),
                               mostly_conv=conv_fraction(module) >= 0.5)


def apply_plan(bb: AnyBackbone, plan: ExecutionPlan, *, provider: Provider | None = None,
               settings: Settings | None = None) -> AnyBackbone:
    """Carry out ``plan`` on a backbone its provider just built (weights in ``plan.build``): the
    one place :func:`hub.load` changes how a backbone runs.

    * a runtime: export (or find in the cache) its forward (:func:`hub.runtimes.prepare`);
    * weights hub casts itself: keep the float32 islands (:func:`hub.islands.keep_islands`), or
      fold the batch norms of a pretrained image network in float32 (:mod:`hub.fold`) and cast
      once;
    * then :meth:`Backbone.configure` (memory layout, compile) with the plan, completed with the
      islands kept and the norms folded.

    :param provider: the provider that built it: its foldable norm subclasses
        (``Provider.norm_layers``) fold too, and ``as_module`` rebuilds float32 weights through it.
    :param settings: where a runtime's exports are cached (default: the environment's).
    """
    import dataclasses

    from hub.backbone import Backbone
    from hub.plan import torch_dtype

    kept: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()
    engine = None
    if (plan.runtime is not None or plan.keep_islands) and not isinstance(bb, Backbone):
        raise InputError(f"{bb.name}: runtimes and float32 islands apply to image and text "
                         "backbones; leave runtime and islands out.")
    if plan.runtime is not None and isinstance(bb, Backbone):
        from hub.config import get_settings
        from hub.runtimes import prepare

        engine = prepare(bb, plan.runtime, precision=plan.compute,
                         settings=settings or get_settings())
    elif plan.cast_by_hub:  # the provider built float32 weights
        low = torch_dtype(plan.weights)
        if low is None:  # cast_by_hub: never float32
            raise InputError(f"{bb.name}: the plan casts to {plan.weights}, not a reduced precision.")
        if plan.keep_islands and plan.islands is not None and isinstance(bb, Backbone):
            from hub.islands import keep_islands

            kept = keep_islands(bb, plan.islands, low)  # all but the islands, exact float32
        else:
            if plan.fold:  # fold in float32, round once
                from hub.fold import fold_batchnorms

                folded = tuple(fold_batchnorms(
                    bb.module, keep={st.module for st in bb.spec.outputs.stages if st.module},
                    norms=provider.norm_layers() if provider is not None else {}))
            bb.module.to(dtype=low)
    return bb.configure(dataclasses.replace(plan, kept=kept, folded=folded), runtime=engine,
                        provider=provider)


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
