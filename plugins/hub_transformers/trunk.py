"""The trainable trunk of a transformers text backbone (``TransformersBackbone.trunk``).

A copy of the ``AutoModel`` with the layers after the last requested hidden state removed (the
``nn.ModuleList`` of ``num_hidden_layers`` blocks is cut, ``num_hidden_layers`` lowered: ALBERT
shares one layer, so only the count changes), the pooler dropped, and GPT-2's final ``ln_f``
replaced by an identity unless the last layer is requested (hidden state ``N`` is normed there).
The output is ``layerI`` -> hidden state ``I`` (0 = embeddings).
"""

from __future__ import annotations

import copy
import inspect
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hub_transformers.provider import TransformersBackbone

__all__ = ["TextBody", "transformers_trunk"]


class TextBody(torch.nn.Module):
    """Tokenised batch -> hidden states of the requested layers."""

    def __init__(self, model: torch.nn.Module, index: dict[str, int]) -> None:
        super().__init__()
        self.model = model
        self._index = index
        self.stage_paths: dict[str, str] = {}
        # no key/value cache (GPT-2 builds one by default): a checkpointed block would append
        # its keys to it again when recomputed in the backward pass
        params = inspect.signature(model.forward).parameters
        self._extra = {"use_cache": False} if "use_cache" in params else {}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        out = self.model(**batch, **self._extra, output_hidden_states=True, return_dict=True)
        return {n: out.hidden_states[i] for n, i in self._index.items()}


def transformers_trunk(bb: TransformersBackbone, stages: list[str]) -> TextBody:
    # a transformers PreTrainedModel: config, ln_f and pooler are attributes of its architecture
    model: Any = copy.deepcopy(bb.module)
    config = model.config
    total = int(config.num_hidden_layers)
    last = max(bb.stage_specs[n].index or 0 for n in stages)
    if last < total:
        for sub in model.modules():
            for name, child in list(sub.named_children()):
                if isinstance(child, torch.nn.ModuleList) and len(child) == total:
                    setattr(sub, name, child[:last])
        config.num_hidden_layers = last
        if isinstance(getattr(model, "ln_f", None), torch.nn.Module):
            model.ln_f = torch.nn.Identity()  # GPT-2: hidden state N (only) is normed
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return TextBody(model.train(), {n: int(bb.stage_specs[n].index or 0) for n in stages})
