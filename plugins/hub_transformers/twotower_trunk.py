"""Trainable trunks of the towers of ``CLIPModel`` / ``SiglipModel`` (``TransformersImage.trunk``,
``TransformersText.trunk``) and the text tower's trained pooling.

A trunk is a copy of one tower (``vision_model`` or ``text_model``, under the same attribute
name, so its keys are the parent's) whose encoder keeps the layers up to the last requested
hidden state, with everything after the blocks replaced by an identity: CLIP's
``post_layernorm`` / ``final_layer_norm``, SigLIP's ``post_layernorm``, ``final_layer_norm`` and
``head`` (the attention-pooling head and the text projection). It returns the hidden states
(index 0 = embeddings) under the manifest's stage names; the core turns image token sequences into
NCHW grids (CLIP's class token as the prefix) as ``extract()`` does.

:class:`TextPool` is the text tower after its blocks (final norm, the end-of-text token for CLIP or
the last position for SigLIP, the projection), given to ``net.pooling_head()``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hub_transformers.twotower import TransformersImage, TransformersText

__all__ = ["TextPool", "TowerBody", "image_trunk", "text_pool", "text_trunk"]


class TowerBody(torch.nn.Module):
    """Pixels or a tokenised batch -> the hidden states of the requested stages."""

    def __init__(self, model: torch.nn.Module, attr: str, index: dict[str, int], *,
                 use_mask: bool = False, num_prefix_tokens: int = 0) -> None:
        super().__init__()
        self.model = model
        self._attr = attr
        self._index = index
        self._use_mask = use_mask
        self.num_prefix_tokens = num_prefix_tokens
        self.stage_paths: dict[str, str] = {}

    def forward(self, inputs: Any) -> dict[str, Any]:
        tower: Any = getattr(self.model, self._attr)
        if self._attr == "vision_model":
            out = tower(pixel_values=inputs, output_hidden_states=True)
        else:
            kw = {"attention_mask": inputs["attention_mask"]} if self._use_mask else {}
            out = tower(input_ids=inputs["input_ids"], output_hidden_states=True, **kw)
        return {n: out.hidden_states[i] for n, i in self._index.items()}


def _cut(parent: torch.nn.Module, attr: str, last: int) -> torch.nn.Module:
    """A new module holding a copy of ``parent.<attr>`` with the encoder cut after layer
    ``last`` and the modules after the blocks made identities."""
    tower: Any = copy.deepcopy(parent.get_submodule(attr))
    layers = tower.encoder.layers
    if last < len(layers):
        tower.encoder.layers = layers[:last]
        tower.config.num_hidden_layers = last
    for name in ("post_layernorm", "final_layer_norm", "head"):
        if isinstance(getattr(tower, name, None), torch.nn.Module):
            setattr(tower, name, torch.nn.Identity())
    model = torch.nn.Module()
    setattr(model, attr, tower)
    return model


def image_trunk(bb: TransformersImage, stages: list[str], output_stride: int | None) -> TowerBody:
    """The vision tower's trunk up to the last of ``stages`` (hidden-state indices)."""
    from hub.sdk import InputError

    if output_stride is not None:
        raise InputError(f"{bb.name}: output_stride is not available for ViT towers; use "
                         "output_stride=None.")
    index = {n: bb._indices[n] for n in stages}
    model = _cut(bb.module, "vision_model", max(index.values()))
    return TowerBody(model.train(), "vision_model", index, num_prefix_tokens=bb._prefix)


def text_trunk(bb: TransformersText, stages: list[str]) -> TowerBody:
    """The text tower's trunk up to the last of ``stages`` (``layer0`` .. ``layerN``)."""
    index = {n: int(bb.stage_specs[n].index or 0) for n in stages}
    model = _cut(bb.module, "text_model", max(index.values()))
    return TowerBody(model.train(), "text_model", index, use_mask=bb._use_mask)


class TextPool(torch.nn.Module):
    """Final norm, pooling and projection of a text tower's last hidden state."""

    def __init__(self, norm: torch.nn.Module, projection: torch.nn.Module, *, last: bool) -> None:
        super().__init__()
        self.final_layer_norm = norm
        self.projection = projection
        self._last = last  # SigLIP: the last position; CLIP: the end-of-text token

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.final_layer_norm(x)
        if self._last:
            pooled = x[:, -1]
        else:  # the end-of-text token ends the real tokens
            end = mask.long().sum(dim=1).clamp(min=1) - 1
            pooled = x[torch.arange(x.shape[0], device=x.device), end]
        return self.projection(pooled)  # type: ignore[no-any-return]


def text_pool(bb: TransformersText) -> TextPool:
    """A trainable copy of the text tower after its blocks (CLIP: ``final_layer_norm`` and the
    model's ``text_projection``; SigLIP: ``final_layer_norm`` and the tower's ``head``)."""
    m: Any = bb.module
    text = m.text_model
    if bb._use_mask:  # CLIP
        return TextPool(copy.deepcopy(text.final_layer_norm), copy.deepcopy(m.text_projection),
                        last=False)
    return TextPool(copy.deepcopy(text.final_layer_norm), copy.deepcopy(text.head), last=True)
