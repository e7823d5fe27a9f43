"""The trainable trunk of an open_clip image tower (``OpenClipImage._trunk``).

A copy of the image tower with everything after the last requested stage removed by the
library's own ``prune_intermediate_layers`` (later blocks, the final norm, the pooling head and
the projection into the shared space): open_clip's ViT keeps its class token as each stage's
prefix; timm towers (SigLIP's ViT, MobileCLIP's FastViT) give their maps. The text tower has no
trunk yet (``as_module(modality="text")`` says so).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hub_open_clip.provider import OpenClipImage

__all__ = ["ImageBody", "image_trunk"]


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
        m: Any = self.model
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
    if isinstance(visual, VisionTransformer):
        visual.prune_intermediate_layers(take, prune_norm=True, prune_head=True)
        visual.attn_pool = None
        return ImageBody(visual.train(), index, own_vit=True)
    trunk: Any = visual.trunk  # open_clip's TimmModel: a timm model under .trunk
    trunk.prune_intermediate_layers(take, prune_norm=True, prune_head=True)
    return ImageBody(trunk.train(), index, own_vit=False)
