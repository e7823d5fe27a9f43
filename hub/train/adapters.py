"""LoRA adapters on a trunk: ``as_module(adapter="lora", rank=, alpha=, dropout=, targets=)``.

Mechanism: peft's own LoRA layers (``peft.inject_adapter_in_model`` with a ``LoraConfig`` whose
``target_modules`` is a regular expression matching exactly the resolved module names), injected
into the trunk's ``body.model``. Each target ``X`` becomes a peft layer holding the original as
``X.base_layer`` and the low-rank pair ``X.lora_A`` / ``X.lora_B``; ``lora_B`` starts at zero, so
the adapted trunk computes exactly what the base one does until it trains.

Which modules: :func:`resolve_targets` reads the provider's :class:`hub.targets.TargetRules`
for ``"attention"`` / ``"mlp"`` (``"attention+mlp"`` is both), every linear layer for
``"all-linear"``, every ungrouped convolution for ``"conv"``, or takes a list of module names
(relative to the backbone's module, as its ``state_dict`` keys read).

Invariants: only adapter parameters (and what the caller adds: heads) require gradients; the
base keys are recovered by dropping ``.base_layer`` (:func:`base_key`), so the parent's key space
(``parent_state_dict``, saving, layer depths) is unchanged; :func:`merged_copy` folds the
low-rank update into the base weights with peft's own ``merge``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hub.errors import InputError
from hub.targets import SETS, TargetRules, find_targets, is_conv1d

if TYPE_CHECKING:
    from hub.provider import Provider

__all__ = ["ADAPTERS", "AdapterConfig", "adapter_config", "adapter_state", "attach", "base_key", "inject",
           "is_adapter_key", "lora_config", "merged_copy", "resolve_targets"]

#: the adapter kinds ``as_module(adapter=...)`` takes
ADAPTERS = ("lora",)
_BASE = ".base_layer"
#: the peft key prefix of a PeftModel's state (what ``PeftModel.save_pretrained`` writes)
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterConfig:
    """An adapter as asked for: kind, rank, scale numerator, dropout and the target set or names."""

    kind: str
    rank: int
    alpha: float
    dropout: float
    targets: str | tuple[str, ...]


def adapter_config(adapter: str | None, *, rank: int, alpha: float, dropout: float,
                   targets: str | Sequence[str]) -> AdapterConfig | None:
    """Check ``as_module``'s adapter options; ``None`` when no adapter is asked for.

    :raises InputError: naming the option and what it can be.
    """
    if adapter is None:
        return None
    if adapter not in ADAPTERS:
        raise InputError(f"adapter={adapter!r} is not one of {', '.join(ADAPTERS)} (or None for "
                         "full fine-tuning).")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"rank must be a positive integer (e.g. 8), got {rank!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise InputError(f"alpha must be a positive number (e.g. 16), got {alpha!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise InputError(f"dropout must be a number in [0, 1), got {dropout!r}.")
    if isinstance(targets, str):
        if targets not in SETS:
            raise InputError(f"targets={targets!r} is not one of {', '.join(map(repr, SETS))} or a "
                             "list of module names.")
        names: str | tuple[str, ...] = targets
    else:
        names = tuple(targets)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise InputError(f"targets must name at least one module (strings), got {targets!r}.")
    return AdapterConfig(adapter, rank, float(alpha), float(dropout), names)


def _kind(module: torch.nn.Module) -> str | None:
    """What peft adapts ``module`` as, or ``None`` when it cannot (grouped convolutions:
    peft cannot merge them)."""
    if isinstance(module, torch.nn.MultiheadAttention):
        return "attention"
    if isinstance(module, torch.nn.Linear) or is_conv1d(module):
        return "linear"
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        return "conv" if module.groups == 1 else None
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    return None


def _possible(model: torch.nn.Module, rules: TargetRules) -> str:
    counts = {s: len(_from_set(model, rules, s)) for s in SETS}
    sets = [f"{s!r} ({n} modules)" for s, n in counts.items() if n]
    return ("targets=" + " or ".join(sets) + ", or a list of module names") if sets else \
        "a list of module names (nn.Linear, ungrouped convolutions, nn.MultiheadAttention)"


def _from_set(model: torch.nn.Module, rules: TargetRules, targets: str) -> list[str]:
    found: set[str] = set()
    for group in targets.split("+"):
        found.update(find_targets(model, rules, group))
    return [n for n, _ in model.named_modules() if n in found]  # in the network's order


def resolve_targets(model: torch.nn.Module, rules: TargetRules, targets: str | tuple[str, ...], *,
                    what: str) -> list[str]:
    """The module names (relative to ``model``) the adapter goes on.

    :raises InputError: a set that finds nothing in this network, or a name that is no module
        peft can adapt; the message says which sets this network has.
    """
    if isinstance(targets, str):
        names = _from_set(model, rules, targets)
        if not names:
            raise InputError(f"{what}: targets={targets!r} finds no module in this network. "
                             f"Use {_possible(model, rules)}.")
        return names
    modules = dict(model.named_modules())
    for name in targets:
        if name not in modules:
            raise InputError(f"{what}: targets names {name!r}, which is no module of this network "
                             f"(module names as in its state_dict keys). Use {_possible(model, rules)}.")
        if _kind(modules[name]) is None:
            kind = type(modules[name]).__name__
            raise InputError(f"{what}: {name!r} is a {kind}, which LoRA cannot adapt here (peft "
                             "adapts nn.Linear, ungrouped convolutions, nn.Embedding and "
                             f"nn.MultiheadAttention). Use {_possible(model, rules)}.")
    return list(targets)


def lora_config(config: AdapterConfig, names: Sequence[str]) -> Any:
    """peft's ``LoraConfig`` for exactly ``names`` (a full-match regular expression)."""
    from hub.deps import require

    peft = require("peft", extra="adapters", purpose="LoRA adapters")
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    return peft.LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                           target_modules=pattern, bias="none")


def inject(model: torch.nn.Module, config: AdapterConfig, names: Sequence[str]) -> Any:
    """Put peft's LoRA layers on ``names`` of ``model`` (in place); returns the ``LoraConfig``.
    Every parameter of ``model`` but the adapters' stops requiring gradients."""
    import warnings

    from hub.deps import require

    peft = require("peft", extra="adapters", purpose="LoRA adapters")
    lc = lora_config(config, names)
    with warnings.catch_warnings():  # peft warns when it sets fan_in_fan_out for GPT-2's Conv1D
        warnings.simplefilter("ignore", UserWarning)
        peft.inject_adapter_in_model(lc, model)
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_key(name))
    return lc


def is_adapter_key(name: str) -> bool:
    """Whether a parameter/state key belongs to a LoRA adapter."""
    return ".lora_" in name or name.startswith("lora_")


def base_key(name: str) -> str:
    """The base network's key of a key of an adapted network (``.base_layer`` dropped)."""
    return name.replace(_BASE, "")


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors in peft's key space (``X.lora_A.weight``, adapter name dropped),
    as ``peft.get_peft_model_state_dict`` gives them."""
    from hub.deps import require

    peft = require("peft", extra="adapters", purpose="LoRA adapters")
    state: dict[str, torch.Tensor] = peft.get_peft_model_state_dict(model)
    return state


def merged_copy(model: torch.nn.Module, *, inplace: bool = False) -> torch.nn.Module:
    """A copy of the adapted ``model`` (``inplace``: the model itself) with every adapter merged
    into its base weights by peft (``W + scale * B @ A``) and the peft layers replaced by their
    base modules."""
    from peft.tuners.lora import LoraLayer

    out = model if inplace else copy.deepcopy(model)
    layers = [(n, m) for n, m in out.named_modules() if isinstance(m, LoraLayer)]
    for name, sub in layers:  # outermost only: an attention layer merges its out-projection
        if not any(name.startswith(o + ".") for o, _ in layers):
            sub.merge(safe_merge=True)
    while True:  # each peft layer replaced by its (merged) base module, outermost first
        found = next(((n, m) for n, m in out.named_modules() if isinstance(m, LoraLayer)), None)
        if found is None:
            return out
        name, sub = found
        parent_name, _, leaf = name.rpartition(".")
        setattr(out.get_submodule(parent_name), leaf, sub.get_base_layer())


def attach(net: torch.nn.Module, model: torch.nn.Module, rules: TargetRules, config: AdapterConfig,
           *, frozen: set[str], depth: dict[str, int], prefix: str,
           what: str) -> tuple[list[str], Any, dict[str, int]]:
    """Put the adapter on ``model`` (the network inside ``net``, at ``prefix`` in its parameter
    names): targets whose parameters are in ``frozen`` are left out; afterwards only adapter
    parameters of ``net`` train. Returns the targets, peft's ``LoraConfig`` and the layer depth
    of each parameter of ``net`` (an adapter at its module's depth, from ``depth``).

    :raises InputError: bad targets, or every target frozen.
    """
    names = resolve_targets(model, rules, config.targets, what=what)
    names = [n for n in names if not any(p.startswith(f"{prefix}{n}.") for p in frozen)]
    if not names:
        raise InputError(f"{what}: every adapter target lies in a frozen stage; freeze fewer "
                         "stages or target later modules.")
    lora = inject(model, config, names)
    for name, p in net.named_parameters():  # the net's other modules (pool heads) too
        if not is_adapter_key(name):
            p.requires_grad_(False)
    by_module = module_depths(depth)
    out = {}
    for name, _ in net.named_parameters():
        base = base_key(name)
        d = by_module.get(base.split(".lora_")[0]) if is_adapter_key(name) else depth.get(base)
        if d is not None:
            out[name] = d
    return names, lora, out


def module_depths(depth: dict[str, int]) -> dict[str, int]:
    """Module name -> layer depth, from a parameter-name -> depth map."""
    out: dict[str, int] = {}
    for name, d in depth.items():
        out.setdefault(name.rsplit(".", 1)[0], d)
    return out


def provider_rules(provider: Provider | None) -> TargetRules:
    """The provider's target rules (a backbone built without a provider: the generic ones)."""
    return provider.adapter_rules() if provider is not None else TargetRules()
