"""Freezing stages and choosing how batch norms behave while training.

``freeze``: a stage name or a count; the stem and every stage up to that one stop learning
(``requires_grad=False``), and their batch norms stay in eval mode through ``.train()``, so their
running statistics never change. ``norm``:

* ``"frozen"``: every ``BatchNorm2d`` becomes torchvision's ``FrozenBatchNorm2d`` (statistics
  and affine copied; nothing in them is trained), as torchvision's detection backbones do. A
  library's subclass that does more than normalise (timm's ``BatchNormAct2d``: dropout and
  activation) becomes a :class:`FrozenNorm` that still does it, as its provider declares
  (:meth:`hub.provider.Provider.norm_layers`, the table batch-norm folding reads too). Any other
  batch norm (an undeclared subclass, ``BatchNorm1d/3d``, one without running statistics) keeps
  its module, in eval mode through ``.train()`` and with its parameters frozen: the same
  function, nothing trained;
* ``"eval"``: batch norms stay in eval mode through ``.train()`` (their affine still learns
  unless frozen), as mmdet's ``norm_eval`` and smp's frozen encoders do;
* ``"train"``: ordinary batch norms (outside frozen stages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from hub.errors import InputError

if TYPE_CHECKING:
    from hub.provider import NormLayer

__all__ = ["NORMS", "FrozenNorm", "freeze_count", "frozen_batchnorm", "norms_in_eval"]

NORMS = ("frozen", "eval", "train")


def freeze_count(freeze: str | int | None, names: list[str], *, what: str) -> int:
    """How many of ``names`` (the stages up to the last requested one) are frozen."""
    if freeze is None:
        return 0
    if isinstance(freeze, bool) or not isinstance(freeze, (int, str)):
        raise InputError(f"freeze must be a stage name, a count or None, got {freeze!r}.")
    if isinstance(freeze, str):
        if freeze not in names:
            raise InputError(f"{what}: cannot freeze up to {freeze!r}: the stages up to the last "
                             f"requested one are {names}.")
        return names.index(freeze) + 1
    if not 0 <= freeze <= len(names):
        raise InputError(f"{what}: freeze={freeze} is out of range: there are {len(names)} stages "
                         f"up to the last requested one ({names}); use 0 to {len(names)}.")
    return freeze


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise InputError(f"norm={norm!r} is not one of {', '.join(NORMS)}.")


class FrozenNorm(torch.nn.Module):
    """A library's batch-norm subclass, frozen: its running statistics and affine as buffers (as
    torchvision's ``FrozenBatchNorm2d`` holds them), applied by the eval-mode batch-norm kernel
    (the library norm's own numbers in eval), then what the library's norm does after
    normalising (:attr:`hub.provider.NormLayer.after`), through the norm's own child modules
    (e.g. ``act``, ``drop``), kept under their names.

    :ivar after: the declared function, called as ``after(self, x)``.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, source: torch.nn.modules.batchnorm._BatchNorm,
                 after: Callable[[Any, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        mean, var = source.running_mean, source.running_var
        if mean is None or var is None:
            raise InputError(f"{type(source).__name__} has no running statistics to freeze; "
                             "keep it as it is.")
        n = source.num_features
        self.register_buffer("running_mean", mean.detach().clone())
        self.register_buffer("running_var", var.detach().clone())
        self.register_buffer("weight", _copy(source.weight, torch.ones_like(mean)))
        self.register_buffer("bias", _copy(source.bias, torch.zeros_like(mean)))
        self.eps = source.eps
        self.num_features = n
        self.after = after
        for name, child in source.named_children():
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the eval-mode batch norm's own kernel: the same numbers as the library's norm in eval
        y = torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                           self.bias, False, 0.0, self.eps)
        return self.after(self, y)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, after={getattr(self.after, '__name__', self.after)}"


def _copy(t: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
    return default if t is None else t.detach().clone()


def frozen_batchnorm(module: torch.nn.Module,
                     norms: Mapping[type, NormLayer] | None = None) -> list[str]:
    """Replace every ``BatchNorm2d`` of ``module`` by torchvision's ``FrozenBatchNorm2d``, and
    every library subclass listed in ``norms`` (:meth:`hub.provider.Provider.norm_layers`) by a
    :class:`FrozenNorm` that still runs what it did after normalising, each with its statistics
    and affine; returns the names of the batch norms left as they are (undeclared subclasses,
    ``BatchNorm1d/3d``, norms without running statistics), which the caller keeps in eval mode
    with frozen parameters."""
    table = dict(norms or {})
    kept = []
    for name, sub in list(module.named_modules()):
        if not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            continue
        layer = table.get(type(sub))
        if sub.running_mean is None or sub.running_var is None:  # normalises with batch statistics
            kept.append(name)
            continue
        if layer is not None:
            frozen: torch.nn.Module = FrozenNorm(sub, layer.after)
        elif type(sub) is torch.nn.BatchNorm2d:
            frozen = _torchvision_frozen(sub)
        else:
            kept.append(name)
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, frozen)  # a Sequential's or ModuleList's child too, by its name
    return kept


def _torchvision_frozen(sub: torch.nn.BatchNorm2d) -> torch.nn.Module:
    from torchvision.ops.misc import FrozenBatchNorm2d

    frozen: torch.nn.Module = FrozenBatchNorm2d(sub.num_features, eps=sub.eps)
    mean, var = sub.running_mean, sub.running_var
    if mean is None or var is None:  # ruled out by frozen_batchnorm
        raise InputError(f"{type(sub).__name__} has no running statistics to freeze.")
    frozen = frozen.to(device=mean.device, dtype=mean.dtype)
    state = {"running_mean": mean, "running_var": var}
    if sub.weight is not None and sub.bias is not None:
        state.update(weight=sub.weight, bias=sub.bias)
    with torch.no_grad():
        for key, value in state.items():
            getattr(frozen, key).copy_(value)
    return frozen


def norms_in_eval(module: torch.nn.Module, frozen_params: set[str], *, all_norms: bool) -> list[str]:
    """Names of the batch-norm modules to keep in eval mode: all of them (``all_norms``), else
    those whose parameters are all frozen."""
    out = []
    for name, sub in module.named_modules():
        if not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            continue
        own = [f"{name}.{n}" for n, _ in sub.named_parameters()]
        if all_norms or (own and all(o in frozen_params for o in own)):
            out.append(name)
    return out
