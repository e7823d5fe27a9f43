"""Which modules an adapter's target set means, per family: the rules a provider declares.

``as_module(adapter="lora", targets=...)`` takes a target set name or a list of module names.
The sets:

* ``"attention"``: the projections of every attention layer (timm's fused ``qkv`` and ``proj``;
  transformers' ``query``/``key``/``value`` and the attention output; a whole
  ``nn.MultiheadAttention``, which peft adapts as its fused in-projection and its out-projection);
* ``"mlp"`` (only as part of ``"attention+mlp"``): the linear layers of every MLP / feed-forward
  block;
* ``"all-linear"``: every ``nn.Linear`` the module holds (and every ``nn.MultiheadAttention``,
  and transformers' ``Conv1D``: GPT-2's linear layers);
* ``"conv"``: every ungrouped convolution (peft cannot merge grouped ones, and needs the rank
  divisible by the groups).

A provider says what "attention" and "mlp" mean in its networks with a :class:`TargetRules`
(:meth:`hub.provider.Provider.adapter_rules`): the modules that *own* an attention or an MLP
block, by class name or by attribute name. :func:`find_targets` applies them: inside the
outermost owner, every ``nn.Linear`` (subclasses included) and every
``nn.MultiheadAttention`` (its own out-projection left to peft) is a target.

No torch at import; :func:`find_targets` takes the built module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["GROUPS", "SETS", "TargetRules", "find_targets", "is_conv1d"]

#: the target set names ``as_module(targets=...)`` takes
SETS = ("attention", "attention+mlp", "all-linear", "conv")
#: the groups a provider's rules name
GROUPS = ("attention", "mlp")


@dataclass(frozen=True)
class TargetRules:
    """What owns an attention or an MLP block in one library's networks.

    :param attention_classes: a regular expression searched in each module's class name
        (``"Attention"`` finds timm's ``Attention``, transformers' ``BertAttention``).
    :param attention_names: attribute names of attention modules (``attn``, ``self_attn``).
    :param mlp_classes: the same for MLP / feed-forward blocks (``Mlp``, ``BertIntermediate``).
    :param mlp_names: attribute names of MLP blocks (``mlp``).
    """

    attention_classes: str = r"Attention"
    attention_names: tuple[str, ...] = ("attn", "attention", "self_attn", "self_attention")
    mlp_classes: str = r"(MLP|Mlp|Intermediate|FeedForward|FFN|(?<!Self)Output)$"
    mlp_names: tuple[str, ...] = ("mlp", "ffn", "feed_forward")

    def owns(self, group: str, name: str, module: object) -> bool:
        """Whether ``module`` (at ``name``) owns a block of ``group``."""
        classes, names = ((self.attention_classes, self.attention_names) if group == "attention"
                          else (self.mlp_classes, self.mlp_names))
        leaf = name.rsplit(".", 1)[-1]
        return leaf in names or re.search(classes, type(module).__name__) is not None


def _adaptable(module: torch.nn.Module) -> bool:
    """A linear layer peft adapts: ``nn.Linear`` (subclasses included), transformers' ``Conv1D``
    (GPT-2's transposed linear; peft sets ``fan_in_fan_out`` for it), ``nn.MultiheadAttention``."""
    import torch

    return isinstance(module, (torch.nn.Linear, torch.nn.MultiheadAttention)) or is_conv1d(module)


def is_conv1d(module: object) -> bool:
    """transformers' ``Conv1D`` (a linear layer with a transposed weight), known by its class
    and module names so that nothing imports transformers."""
    kind = type(module)
    return kind.__name__ == "Conv1D" and kind.__module__.startswith("transformers.")


def find_targets(module: torch.nn.Module, rules: TargetRules, group: str) -> list[str]:
    """Names (relative to ``module``) of the modules ``group`` means under ``rules``.

    :param group: ``"attention"``, ``"mlp"``, ``"all-linear"`` or ``"conv"``.
    Modules inside an attention owner never count as ``"mlp"`` (BERT's attention output).
    """
    import torch

    named = list(module.named_modules())
    if group == "conv":
        convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
        return [n for n, m in named if n and isinstance(m, convs) and m.groups == 1]
    if group == "all-linear":
        return _without_inner([n for n, m in named if n and _adaptable(m)])
    owners = _outermost([n for n, m in named if n and rules.owns(group, n, m)])
    if group == "mlp":  # an attention block's output projection is attention's
        attention = _outermost([n for n, m in named if n and rules.owns("attention", n, m)])
        owners = [o for o in owners if not any(_under(o, a) for a in attention)]
    found = [n for n, m in named if _adaptable(m) and any(_under(n, o) for o in owners)]
    return _without_inner(found)


def _under(name: str, owner: str) -> bool:
    return name == owner or name.startswith(owner + ".")


def _outermost(names: list[str]) -> list[str]:
    return [n for n in names if not any(o != n and _under(n, o) for o in names)]


def _without_inner(names: list[str]) -> list[str]:
    """Drop modules inside another target (an ``nn.MultiheadAttention``'s out-projection:
    peft adapts it with the attention)."""
    return _outermost(names)
