"""Batch norms folded into the convolutions they follow, for eval-mode forwards in bf16/fp16.

In inference a batch norm is a per-channel affine map with constant statistics, so a
convolution followed by one equals a single convolution with rescaled weights and a bias
(``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``; torch's
:func:`torch.nn.utils.fusion.fuse_conv_bn_weights` does the arithmetic). Folding removes a
pass over every activation map: resnet50 in bfloat16, batch 16, runs 1.17x faster on a 2-core
AMX Xeon (docs/benchmarks.md). Computing the folded weights in float32 and then rounding them
once is also more faithful than running the batch norm in bf16.

:func:`foldable_pairs` finds the pairs with :func:`torch.fx.symbolic_trace` of the module's
``forward``: a ``Conv1d/2d/3d`` call whose output feeds nothing but a plain ``BatchNorm1d/2d/3d``
call, each module called once; a library's subclass of the batch norms (timm's ``BatchNormAct2d``,
a norm with its activation) is folded too when its provider declares it, with what the subclass
does after normalising (:class:`hub.provider.NormLayer`, :meth:`hub.provider.Provider.norm_layers`:
the same table ``as_module(norm="frozen")`` reads). A network fx cannot trace is left as it is.

:func:`fold_batchnorms` keeps the network a faithful ``nn.Module``. Each folded pair stays the
same two objects, their classes swapped *in place* to subclasses (so the hooks and fx extractors
providers attach to them keep working): the convolution keeps its own weights and gains the
folded ones as non-persistent buffers; the norm keeps its parameters and statistics. So
``state_dict()`` and ``load_state_dict()`` see the architecture's keys and values, and
``.to()`` converts the folded copies with the weights. Only an eval-mode forward uses the fold
(the convolution runs the folded weights and the norm passes its input through); in training
mode both run as before. The folded weights are computed again whenever their sources change:
``load_state_dict``, an optimiser step or any in-place edit (torch's version counters), so
they never go stale. They cost a second copy of the folded convolutions' weights (a bf16
network then holds about what its float32 weights took).

:func:`hub.load` calls it (this module imports torch) for image networks built from pretrained
weight files that are about to be cast to a reduced precision; ``dtype="float32"`` keeps the
anchor library's exact modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.fx
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

if TYPE_CHECKING:
    from hub.provider import NormLayer

__all__ = ["FoldedConv", "FoldedNorm", "fold_batchnorms", "foldable_pairs"]

log = logging.getLogger(__name__)

_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def _version(t: torch.Tensor | None) -> int:
    """A tensor's in-place version counter (inference tensors have none: -2; no tensor: -1)."""
    if t is None:
        return -1
    return -2 if t.is_inference() else t._version


class FoldedConv(torch.nn.Module):
    """Mixin of a convolution whose batch norm is folded into it (see the module docstring).

    :ivar folded_weight: the folded weights (a non-persistent buffer).
    :ivar folded_bias: the folded bias (a non-persistent buffer).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    folded_weight: torch.Tensor
    folded_bias: torch.Tensor
    _fold_norm: _BatchNorm
    _fold_seen: tuple[int, ...]
    _fold_stale: bool

    def _fold_sources(self) -> tuple[torch.Tensor | None, ...]:
        n = self._fold_norm
        return self.weight, self.bias, n.weight, n.bias, n.running_mean, n.running_var

    def fold_active(self) -> bool:
        """Whether a forward now runs folded: the convolution and its norm are in eval mode."""
        return not self.training and not self._fold_norm.training

    def fold_snapshot(self) -> None:
        """Accept the sources as they are now as the ones the folded weights came from."""
        object.__setattr__(self, "_fold_seen", tuple(_version(t) for t in self._fold_sources()))
        object.__setattr__(self, "_fold_stale", False)

    def refold(self) -> None:
        """Compute the folded weights from the current sources, in float32 (float64 for a
        float64 network), then round them once to the weights' dtype and layout."""
        n = self._fold_norm
        if n.running_mean is None or n.running_var is None:  # ruled out by foldable_pairs
            return

        wide = torch.promote_types(self.weight.dtype, torch.float32)  # float32, or float64

        def up(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to(wide)

        with torch.inference_mode(False), torch.no_grad():
            w, b = fuse_conv_bn_weights(self.weight.detach().to(wide), up(self.bias),
                                        n.running_mean.to(wide), n.running_var.to(wide), n.eps,
                                        up(n.weight), up(n.bias))
            self.folded_weight = torch.empty_like(self.weight).copy_(w)
            self.folded_bias = b.detach().to(self.weight.dtype)
        self.fold_snapshot()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fold_active():
            return super().forward(x)  # type: ignore[no-any-return]
        if self._fold_stale or self._fold_seen != tuple(_version(t) for t in self._fold_sources()):
            self.refold()
        conv: Any = self
        return conv._conv_forward(x, self.folded_weight, self.folded_bias)  # type: ignore[no-any-return]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)  # type: ignore[no-untyped-call]  # buffers too
        self.fold_snapshot()
        return out

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        object.__setattr__(self, "_fold_stale", True)


#: what a library's batch-norm subclass does after normalising (``after(norm, x)``), e.g. its
#: activation: :attr:`hub.provider.NormLayer.after`
After = Callable[[Any, "torch.Tensor"], "torch.Tensor"]


class FoldedNorm(torch.nn.Module):
    """Mixin of a batch norm folded into the convolution before it: an eval-mode forward passes
    its input through (or through what the norm does after normalising, for a library's
    subclass), a training one normalises as a batch norm does."""

    _fold_conv: FoldedConv
    _fold_after: After | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fold_conv.fold_active():
            return x if self._fold_after is None else self._fold_after(self, x)
        if self.training:  # the kernel updates the running statistics without a version bump
            object.__setattr__(self._fold_conv, "_fold_stale", True)
        return super().forward(x)  # type: ignore[no-any-return]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        self._fold_conv.fold_snapshot()  # whichever of the pair converts last sets the record
        return out

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        object.__setattr__(self._fold_conv, "_fold_stale", True)


def _subclass(mixin: type, base: type) -> type:
    cls = type(f"Folded{base.__name__}", (mixin, base), {"__module__": __name__})
    globals()[cls.__name__] = cls  # importable by name, so a folded module pickles
    return cls


#: the class each convolution / batch norm becomes when folded (library norms added at first use)
_FOLDED: dict[type, type] = {**{c: _subclass(FoldedConv, c) for c in _CONVS},
                             **{n: _subclass(FoldedNorm, n) for n in _NORMS}}


class _Tracer(torch.fx.Tracer):
    """fx's tracer, with the library norm subclasses kept whole (as torch.nn's modules are)."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


def foldable_pairs(module: torch.nn.Module, keep: Collection[str] = (),
                   norms: Mapping[type, NormLayer] | None = None) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` module names that can be folded, in graph order.

    :param keep: module names whose own output must stay as it is (stage outputs a provider
        hooks): a convolution named here is not folded.
    :param norms: a library's batch-norm subclasses that may be folded too, each with what its
        forward does after normalising (:meth:`hub.provider.Provider.norm_layers`).
    :returns: an empty list when the module has no such batch norm, or when fx cannot trace
        its ``forward`` (logged at debug level with fx's reason).
    """
    convs = _CONVS
    kinds: tuple[type, ...] = (*_NORMS, *[t for t in (norms or {}) if issubclass(t, _BatchNorm)])
    mods = dict(module.named_modules())
    if not any(type(m) in kinds for m in mods.values()):
        return []
    try:
        graph = _Tracer(kinds).trace(module)
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
        if node.op != "call_module" or type(mods.get(str(node.target))) not in kinds:
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module":
            continue
        conv, norm = str(src.target), str(node.target)
        bn = mods[norm]
        if (type(mods.get(conv)) in convs and len(src.users) == 1 and len(node.args) == 1
                and not node.kwargs and calls[conv] == 1 and calls[norm] == 1
                and conv not in keep  # a norm without running statistics cannot fold
                and bn.running_mean is not None and bn.running_var is not None):
            pairs.append((conv, norm))
    return pairs


def fold_batchnorms(module: torch.nn.Module, keep: Collection[str] = (),
                    norms: Mapping[type, NormLayer] | None = None) -> list[str]:
    """Fold every batch norm of :func:`foldable_pairs` into its convolution, in place (see the
    module docstring). Call it on the float32 network, then cast: the folded weights are
    computed in float32 and rounded once by the cast.

    :param keep: module names whose output must stay as it is (see :func:`foldable_pairs`).
    :param norms: library norm subclasses that may be folded too (see :func:`foldable_pairs`).
    :returns: the names of the folded batch norms.
    """
    done = []
    for conv_name, norm_name in foldable_pairs(module, keep, norms):
        conv: Any = module.get_submodule(conv_name)
        norm: Any = module.get_submodule(norm_name)
        layer = (norms or {}).get(type(norm))
        if type(norm) not in _FOLDED:
            _FOLDED[type(norm)] = _subclass(FoldedNorm, type(norm))
        conv.__class__ = _FOLDED[type(conv)]
        norm.__class__ = _FOLDED[type(norm)]
        # plain attributes, not child modules: state_dict and named_modules stay the architecture's
        object.__setattr__(conv, "_fold_norm", norm)
        object.__setattr__(norm, "_fold_conv", conv)
        object.__setattr__(norm, "_fold_after", layer.after if layer is not None else None)
        conv.register_buffer("folded_weight", torch.empty(0), persistent=False)
        conv.register_buffer("folded_bias", torch.empty(0), persistent=False)
        conv.refold()
        done.append(norm_name)
    return done
