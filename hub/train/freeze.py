"""Freezing stages and choosing how batch norms behave while training.

``freeze``: a stage name or a count; the stem and every stage up to that one stop learning
(``requires_grad=False``), and their batch norms stay in eval mode through ``.train()``, so their
running statistics never change. ``norm``:

* ``"frozen"``: every ``BatchNorm2d`` becomes torchvision's ``FrozenBatchNorm2d`` (statistics
  and affine copied; nothing in them is trained), as torchvision's detection backbones do;
* ``"eval"``: batch norms stay in eval mode through ``.train()`` (their affine still learns
  unless frozen), as mmdet's ``norm_eval`` and smp's frozen encoders do;
* ``"train"``: ordinary batch norms (outside frozen stages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["NORMS", "freeze_count", "frozen_batchnorm", "norms_in_eval"]

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


def frozen_batchnorm(module: torch.nn.Module) -> int:
    """Replace every ``BatchNorm2d`` of ``module`` by a ``FrozenBatchNorm2d`` with its statistics
    and affine; returns how many were replaced."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    count = 0
    for name, sub in list(module.named_modules()):
        if type(sub) is not torch.nn.BatchNorm2d and not isinstance(sub, torch.nn.BatchNorm2d):
            continue
        frozen = FrozenBatchNorm2d(sub.num_features, eps=sub.eps)
        ref = sub.weight if sub.weight is not None else sub.running_mean
        frozen = frozen.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if sub.weight is not None:
                frozen.weight.copy_(sub.weight)
                frozen.bias.copy_(sub.bias)
            if sub.running_mean is not None:
                frozen.running_mean.copy_(sub.running_mean)
                frozen.running_var.copy_(sub.running_var)
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        if isinstance(parent, (torch.nn.Sequential, torch.nn.ModuleList)):
            parent[int(attr)] = frozen
        else:
            setattr(parent, attr, frozen)
        count += 1
    return count


def norms_in_eval(module: torch.nn.Module, frozen_params: set[str], *, all_norms: bool) -> list[str]:
    """Names of the batch-norm modules to keep in eval mode: all of them (``all_norms``), else
    those whose parameters are all frozen."""
    import torch

    out = []
    for name, sub in module.named_modules():
        if not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            continue
        own = [f"{name}.{n}" for n, _ in sub.named_parameters()]
        if all_norms or (own and all(o in frozen_params for o in own)):
            out.append(name)
    return out
