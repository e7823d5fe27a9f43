"""Activation (gradient) checkpointing of a trunk's repeated blocks.

The blocks are the children of the innermost containers (``nn.Sequential``, ``nn.ModuleList``,
``nn.ModuleDict``) holding two or more modules of one class with parameters: ResNet bottlenecks,
ViT/Swin/ConvNeXt blocks, EfficientNet inverted residuals, DenseNet layers, transformer layers.
Each such block's forward runs under ``torch.utils.checkpoint`` (non-reentrant) while gradients
are on: its activations are recomputed in the backward pass instead of kept. Parameter names do
not change (the block's class is swapped for a subclass that checkpoints ``forward``).

Batch norms inside a checkpointed block update their running statistics in the recomputation as
well (as in timm and torchvision); use ``norm="frozen"`` or ``"eval"`` to avoid it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["checkpoint_blocks", "repeated_containers"]


@functools.cache
def _checkpointed(cls: type) -> type:
    import torch
    from torch.utils.checkpoint import checkpoint

    new: type[Any]  # the subclass built below; forward looks past it in the MRO

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            # a list argument is copied: the recomputation must see it as it is now (timm's
            # DenseNet layers take the block's feature list, which grows after each layer)
            args = tuple(list(a) if isinstance(a, list) else a for a in args)
            return checkpoint(super(new, self).forward, *args, use_reentrant=False, **kwargs)
        return super(new, self).forward(*args, **kwargs)

    new = type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward, "__module__": cls.__module__,
                                                    "_hub_ckpt": True})
    return new


def repeated_containers(module: torch.nn.Module, *, innermost: bool = True) -> list[torch.nn.Module]:
    """The containers holding two or more modules of one class with parameters (the repeated
    blocks are their children), in definition order; ``innermost``: only those holding no other."""
    import torch

    kinds = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
    found: list[torch.nn.Module] = []
    for sub in module.modules():
        if not isinstance(sub, kinds):
            continue
        kids = [c for c in sub.children() if any(True for _ in c.parameters())]
        if len(kids) >= 2 and len({type(c) for c in kids}) == 1:
            found.append(sub)
    if not innermost:
        return found
    # innermost only: drop containers that hold another found container
    ids = {id(c) for c in found}
    return [c for c in found if not any(id(m) in ids for m in c.modules() if m is not c)]


def checkpoint_blocks(module: torch.nn.Module) -> int:
    """Checkpoint every repeated block of ``module``; returns how many blocks were wrapped."""
    count = 0
    for container in repeated_containers(module):
        for child in container.children():
            if any(True for _ in child.parameters()) and not getattr(type(child), "_hub_ckpt", False):
                kind: type = type(child)
                child.__class__ = _checkpointed(kind)
                count += 1
    return count
