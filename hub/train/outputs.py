"""What a trainable trunk returns: :class:`Stages`, a pytree node for torch's graph tools.

:func:`register_pytree` makes ``torch.export``, ``torch.onnx.export`` (dynamo) and
``torch.compile`` flatten a ``Stages`` (its stage tensors and its ``prefix`` dict) and rebuild
it; :class:`~hub.train.trunk.Trunk` calls it when it is made, not this module's import.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

__all__ = ["Stages", "register_pytree"]


class Stages(OrderedDict):  # type: ignore[type-arg]
    """Stage name -> tensor, in stage order; ``prefix`` holds the class/register tokens (B, P, D)
    removed from token-model grids (used by ``pool`` for ``cls`` pooling)."""

    prefix: dict[str, torch.Tensor]


def _flatten(out: Stages) -> tuple[list[Any], list[str]]:
    return [*out.values(), dict(getattr(out, "prefix", {}))], list(out)


def _flatten_with_keys(out: Stages) -> tuple[list[tuple[Any, Any]], list[str]]:
    from torch.utils._pytree import GetAttrKey, MappingKey

    values, keys = _flatten(out)
    entries: list[Any] = [MappingKey(k) for k in keys] + [GetAttrKey("prefix")]
    return list(zip(entries, values, strict=True)), keys


def _unflatten(values: Any, keys: list[str]) -> Stages:
    *maps, prefix = values
    out = Stages(zip(keys, maps, strict=True))
    out.prefix = dict(prefix)
    return out


def register_pytree() -> None:
    """Make :class:`Stages` a pytree node (stage tensors and the ``prefix`` dict as children), so
    ``torch.export``, ``torch.onnx.export`` (dynamo) and ``torch.compile`` flatten the output and
    rebuild it with its ``prefix``. Without it torch.export refuses the unknown output type.
    Called when a :class:`~hub.train.trunk.Trunk` is made (every ``Stages`` comes from one);
    registering twice is a no-op."""
    from torch.utils import _pytree

    if Stages not in _pytree.SUPPORTED_NODES:
        _pytree.register_pytree_node(Stages, _flatten, _unflatten,
                                     serialized_type_name=f"{__name__}.Stages",
                                     flatten_with_keys_fn=_flatten_with_keys)
