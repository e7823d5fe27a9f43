"""Optimizer parameter groups with real ``lr`` and ``weight_decay`` values.

Usable with any ``torch.optim`` optimizer and scheduler (schedulers scale each group's ``lr``).
No weight decay on 0/1-dimensional parameters (biases, norm scales), on biases, and on position
embeddings, class/register/distillation tokens and relative position tables. With
``layer_decay``, a parameter at depth ``d`` (0 = stem, ``n`` = the last stage) gets
``lr * layer_decay ** (n - d)``: the deeper, the larger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["NO_DECAY_NAMES", "param_groups"]

#: parameter-name fragments that never get weight decay
NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token", "mask_token", "position_embedding",
                  "relative_position_bias_table", "absolute_pos_embed", "wpe.")


def _number(value: Any, what: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise InputError(f"{what} must be a number >= {low}, got {value!r}.")
    return float(value)


def no_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_NAMES)


def param_groups(named: list[tuple[str, torch.Tensor]], depth: dict[str, int], num_layers: int, *,
                 lr: float, weight_decay: float, layer_decay: float | None) -> list[dict[str, Any]]:
    """Groups of the trainable parameters in ``named``.

    :param depth: parameter name -> depth (0 .. ``num_layers``).
    """
    lr = _number(lr, "lr")
    weight_decay = _number(weight_decay, "weight_decay")
    if layer_decay is not None:
        layer_decay = _number(layer_decay, "layer_decay")
        if not 0 < layer_decay <= 1:
            raise InputError(f"layer_decay must be in (0, 1], got {layer_decay!r}.")
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        d = depth.get(name, num_layers) if layer_decay is not None else num_layers
        skip = no_decay(name, p)
        key = (d, skip)
        if key not in groups:
            scale = layer_decay ** (num_layers - d) if layer_decay is not None else 1.0
            groups[key] = {"params": [], "names": [], "lr": lr * scale,
                           "weight_decay": 0.0 if skip else weight_decay, "depth": d}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]
