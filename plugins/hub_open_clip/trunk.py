"""The trainable trunk of an open_clip image tower (``OpenClipImage.trunk``).

A copy of the image tower with everything after the last requested stage removed by the
library's own ``prune_intermediate_layers`` (later blocks, the final norm, the pooling head and
the projection into the shared space): open_clip's ViT keeps its class token as each stage's
prefix; timm towers (SigLIP's ViT, MobileCLIP's FastViT) give their maps.

The text tower's trunk (``OpenClipText.trunk``) is a copy of the token embedding, positional
embedding and the text blocks up to the last requested layer (``CLIP``: the model's own
attributes; ``CustomTextCLIP``, e.g. SigLIP: its ``text`` module pruned by the library's
``prune_intermediate_layers``), mapping ``input_ids`` to the blocks' outputs ``layer1`` ..
``layerN``. :class:`TextPool` is the rest of the text tower (final norm, end-of-text pooling,
projection), given to ``net.pooling_head()``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hub_open_clip.provider import OpenClipImage, OpenClipText

__all__ = ["ImageBody", "TextBody", "TextPool", "image_trunk", "text_pool", "text_trunk"]


class ImageBody(torch.nn.Module):
    """Pixels -> the requested stages of the image tower (NCHW, with prefix tokens for ViTs)."""

    def __init__(self, model: torch.nn.Module, index: dict[str, int], *, own_vit: bool) -> None:
        super().__init__()
        self.model = model
        self._index = index
        self._take = sorted(set(index.values()))
        self._own_vit = own_vit
        self.stage_paths: dict[str, str] = {}

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        visual: Any = self.model.visual
        m: Any = visual if self._own_vit else visual.trunk
        if self._own_vit:
            out = m.forward_intermediates(x, indices=self._take, intermediates_only=True,
                                          output_fmt="NCHW", output_extra_tokens=True)
            grids = dict(zip(self._take, out["image_intermediates"], strict=True))
            pre = dict(zip(self._take, out["image_intermediates_prefix"], strict=True))
            return {n: (grids[i], pre[i]) for n, i in self._index.items()}
        maps = m.forward_intermediates(x, indices=self._take, intermediates_only=True,
                                       output_fmt="NCHW")
        grids = dict(zip(self._take, maps, strict=True))
        return {n: grids[i] for n, i in self._index.items()}


def image_trunk(bb: OpenClipImage, stages: list[str], output_stride: int | None) -> ImageBody:
    from open_clip.transformer import VisionTransformer

    from hub.sdk import InputError

    if output_stride is not None:
        raise InputError(f"{bb.name}: output_stride is not available for open_clip image towers; "
                         "use output_stride=None.")
    index = {n: bb._indices[n] for n in stages}
    take = sorted(set(index.values()))
    visual: Any = copy.deepcopy(bb.module.get_submodule("visual"))
    # the body's modules sit under the parent's paths (visual., visual.trunk.), so its state dict
    # keys are the parent's and net.save() writes them where hub.load() reads them
    model = torch.nn.Module()
    if isinstance(visual, VisionTransformer):
        visual.prune_intermediate_layers(take, prune_norm=True, prune_head=True)
        visual.attn_pool = None
        model.visual = visual
        return ImageBody(model.train(), index, own_vit=True)
    trunk: Any = visual.trunk  # open_clip's TimmModel: a timm model under .trunk
    trunk.prune_intermediate_layers(take, prune_norm=True, prune_head=True)
    model.visual = torch.nn.Module()
    model.visual.trunk = trunk
    return ImageBody(model.train(), index, own_vit=False)


class TextBody(torch.nn.Module):
    """Tokenised batch (``input_ids``) -> the requested text layers (B, L, D)."""

    def __init__(self, model: torch.nn.Module, index: dict[str, int], *, custom: bool) -> None:
        super().__init__()
        self.model = model
        self._index = index  # stage -> block index (layerI: block I - 1)
        self._take = sorted(set(index.values()))
        self._custom = custom
        self.stage_paths: dict[str, str] = {}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        m: Any = self.model
        ids = batch["input_ids"]
        if self._custom:  # CustomTextCLIP: its TextTransformer
            inter = m.text.forward_intermediates(ids, indices=self._take, intermediates_only=True,
                                                 output_fmt="NLC")["text_intermediates"]
        else:  # CLIP: token + positional embeddings, then the causal text blocks
            x = m.token_embedding(ids) + m.positional_embedding
            _, inter = m.transformer.forward_intermediates(x, attn_mask=m.attn_mask,
                                                           indices=self._take)
        got = dict(zip(self._take, inter, strict=True))
        return {n: got[i] for n, i in self._index.items()}


def text_trunk(bb: OpenClipText, stages: list[str]) -> TextBody:
    """The text tower's trunk up to the last of ``stages`` (``layer1`` .. ``layerN``)."""
    index = {n: int(bb.stage_specs[n].index or 0) - 1 for n in stages}
    take = sorted(set(index.values()))
    parent: Any = bb.module
    model = torch.nn.Module()
    text = getattr(parent, "text", None)
    if isinstance(text, torch.nn.Module):  # CustomTextCLIP
        pruned: Any = copy.deepcopy(text)
        pruned.prune_intermediate_layers(take, prune_norm=True, prune_head=True)
        model.text = pruned
    else:
        model.token_embedding = copy.deepcopy(parent.token_embedding)
        model.positional_embedding = copy.deepcopy(parent.positional_embedding)
        blocks: Any = copy.deepcopy(parent.transformer)
        blocks.prune_intermediate_layers(take)
        model.transformer = blocks
        mask = parent.attn_mask
        model.register_buffer("attn_mask", None if mask is None else mask.clone(), persistent=False)
    return TextBody(model.train(), index, custom=isinstance(text, torch.nn.Module))


class TextPool(torch.nn.Module):
    """The text tower after its last block: final norm, pooling (``argmax``/``eos``: the
    end-of-text token, the last real one; ``last``; ``first``) and the projection."""

    def __init__(self, norm: torch.nn.Module, projection: Any, pool_type: str) -> None:
        super().__init__()
        self.ln_final = norm
        # a Linear (SigLIP, with bias), a (width, embed) matrix (CLIP), or None
        self.text_projection: Any = projection if isinstance(projection, torch.nn.Module) or \
            projection is None else torch.nn.Parameter(projection.detach().clone())
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln_final(x)
        if self.pool_type == "last":
            pooled = x[:, -1]
        elif self.pool_type == "first":
            pooled = x[:, 0]
        else:  # argmax / eos: the end-of-text token ends the real tokens
            last = mask.long().sum(dim=1).clamp(min=1) - 1
            pooled = x[torch.arange(x.shape[0], device=x.device), last]
        proj: Any = self.text_projection
        if isinstance(proj, torch.nn.Module):
            return proj(pooled)  # type: ignore[no-any-return]
        return pooled if proj is None else pooled @ proj


def text_pool(bb: OpenClipText) -> TextPool:
    """A trainable copy of the text tower after its last block."""
    from hub.sdk import InputError

    parent: Any = bb.module
    text: Any = getattr(parent, "text", None)
    custom = isinstance(text, torch.nn.Module)  # CustomTextCLIP: its TextTransformer
    owner: Any = text if custom else parent
    if getattr(owner, "cls_emb", None) is not None:
        raise InputError(f"{bb.name}: its text tower pools a class token (CoCa); hub's text "
                         "trunk does not support it.")
    pool_type = str(text.pool_type if custom else parent.text_pool_type)
    return TextPool(copy.deepcopy(owner.ln_final), copy.deepcopy(owner.text_projection), pool_type)
