"""Batch norms folded into the convolutions they follow, before a network is cast to bf16/fp16.

In inference a batch norm is a per-channel affine map with constant statistics, so a
convolution followed by one equals a single convolution with rescaled weights and a bias
(``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``; torch's
:func:`torch.nn.utils.fusion.fuse_conv_bn_weights` does the arithmetic). Folding removes a
pass over every activation map: resnet50 in bfloat16, batch 16, runs 1.17x faster on a 2-core
AMX Xeon (docs/benchmarks.md). Computing the folded weights in float32 and then rounding them
once is also more faithful than running the batch norm in bf16.

:func:`fold_batchnorms` finds the pairs with :func:`torch.fx.symbolic_trace` of the module's
``forward``: a ``Conv1d/2d/3d`` call whose output feeds nothing but a plain ``BatchNorm1d/2d/3d``
call, each module called once. A network fx cannot trace is left as it is (reported, not folded).
A folded batch norm becomes a :class:`FoldedNorm` *in place* (the same object, its class
swapped and its tensors dropped), so the hooks and fx extractors that providers attach to it
keep working and see the same values as before.

:func:`hub.load` calls it (this module imports torch) for image networks built from
pretrained weight files that are about to be cast to a reduced precision; ``dtype="float32"``
keeps the anchor library's exact module structure. Training
(:meth:`hub.backbone.Backbone.as_module`) starts from a float32 rebuild that still has its
batch norms. Subclasses of the batch norms (timm's ``BatchNormAct2d``, a norm with its
activation, in EfficientNet, RegNet, DenseNet...) are not folded: their forward does more.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import torch
import torch.fx
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["FoldedNorm", "fold_batchnorms", "foldable_pairs"]

log = logging.getLogger(__name__)

_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


class FoldedNorm(torch.nn.Module):
    """A batch norm folded into the convolution before it: passes its input through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def foldable_pairs(module: torch.nn.Module, keep: Collection[str] = ()) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` module names that can be folded, in graph order.

    :param keep: module names whose own output must stay as it is (stage outputs a provider
        hooks): a convolution named here is not folded.
    :returns: an empty list when the module has no plain batch norm, or when fx cannot trace
        its ``forward`` (logged at debug level with fx's reason).
    """
    convs, norms = _CONVS, _NORMS
    mods = dict(module.named_modules())
    if not any(type(m) in norms for m in mods.values()):
        return []
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:  # any failure of fx to trace means: do not fold
        log.debug("batch norms not folded: fx cannot trace %s (%s: %s)", type(module).__name__,
                  type(exc).__name__, exc)
        return []
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(mods.get(str(node.target))) not in norms:
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module":
            continue
        conv, norm = str(src.target), str(node.target)
        bn = mods[norm]
        if (type(mods.get(conv)) in convs and len(src.users) == 1 and len(node.args) == 1
                and not node.kwargs and calls[conv] == 1 and calls[norm] == 1
                and conv not in keep and bn.track_running_stats
                and bn.running_mean is not None and bn.running_var is not None):
            pairs.append((conv, norm))
    return pairs


def fold_batchnorms(module: torch.nn.Module, keep: Collection[str] = ()) -> list[str]:
    """Fold every batch norm of :func:`foldable_pairs` into its convolution, in place.

    The module must be in eval mode and in float32 (fold first, then cast).

    :param keep: module names whose output must stay as it is (see :func:`foldable_pairs`).
    :returns: the names of the folded batch norms.
    """
    done = []
    for conv_name, norm_name in foldable_pairs(module, keep):
        conv: Any = module.get_submodule(conv_name)  # a Conv1d/2d/3d (foldable_pairs)
        bn: Any = module.get_submodule(norm_name)  # a BatchNorm1d/2d/3d with running stats
        if conv.weight.dtype != torch.float32:
            continue
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                            bn.running_var, bn.eps, bn.weight, bn.bias)
        conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
        # in place: hooks and extractors that hold this object keep working
        bn._parameters.clear()
        bn._buffers.clear()
        bn.__class__ = FoldedNorm
        done.append(norm_name)
    return done
