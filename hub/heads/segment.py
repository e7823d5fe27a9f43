"""Semantic segmenters: torchvision's DeepLabV3, or a light FPN decoder (Panoptic FPN's semantic head).

Both return what torchvision's segmentation models return: ``OrderedDict({"out": logits})`` with
logits (B, num_classes, H, W) at the input's resolution (bilinear upsampling), for
``torch.nn.functional.cross_entropy(out["out"], masks)``. Inputs are pixels normalised with
``net.mean``/``net.std``, as for the net itself.

* ``"deeplabv3"``: torchvision's ``DeepLabV3`` model with its ``DeepLabHead`` (ASPP, dilations 12,
  24, 36) on the net's LAST returned map. It runs at any stride; torchvision builds it on a ResNet at
  output stride 8, and masks are sharper at 8 or 16 than at 32: use ``as_module(output_stride=8)``
  (or 16) where the architecture allows it, or ``arch="fpn"``. Its image-pooling branch normalises a
  1x1 map with BatchNorm, so training needs batches of two or more, as in torchvision.
* ``"fpn"``: torchvision's ``FeaturePyramidNetwork`` on the stages at stride >= 4, then per level
  ``k = log2(stride / finest)`` blocks of conv 3x3 + GroupNorm + ReLU, each followed by a 2x
  upsampling (one block without upsampling for the finest level), the levels summed, and a 1x1
  convolution to the classes (Kirillov et al., "Panoptic Feature Pyramid Networks", 2019). It needs
  two or more strides (a ViT: ``as_module(pyramid=True)``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from hub.errors import InputError
from hub.heads._parts import FeaturePyramidBackbone, NetInfo, checked_keywords

__all__ = ["ARCHS", "SemanticFPN", "SemanticFPNHead", "segmenter"]

ARCHS = ("deeplabv3", "fpn")


class _LastMap(nn.Module):
    """The net's last returned map as ``{"out": map}``, what torchvision's segmentation models read."""

    def __init__(self, net: nn.Module, stage: str) -> None:
        super().__init__()
        self.net = net
        self.stage = stage

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(out=self.net(pixels)[self.stage])


class SemanticFPNHead(nn.Module):
    """Panoptic FPN's semantic branch: every FPN level brought to the finest one, summed, classified.

    :param in_channels: channels of the FPN levels.
    :param strides: the levels' strides, finest first.
    :param num_classes: output classes.
    :param channels: width of the upsampling blocks (128 in the paper).
    """

    def __init__(self, in_channels: int, strides: Sequence[int], num_classes: int, *,
                 channels: int = 128) -> None:
        from torchvision.ops.misc import Conv2dNormActivation

        super().__init__()
        groups = 32 if channels % 32 == 0 else 1
        self.steps: list[int] = []
        self.levels = nn.ModuleList()
        for stride in strides:
            k = max(round(math.log2(stride / strides[0])), 0)
            self.steps.append(k)
            blocks = [Conv2dNormActivation(in_channels if i == 0 else channels, channels, kernel_size=3,
                                           norm_layer=lambda c: nn.GroupNorm(groups, c))
                      for i in range(max(k, 1))]
            self.levels.append(nn.ModuleList(blocks))
        self.predictor = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """FPN maps, finest first -> logits at the finest map's size."""
        size = maps[0].shape[-2:]
        total: torch.Tensor | None = None
        for x, k, level in zip(maps, self.steps, self.levels, strict=False):
            blocks = cast(nn.ModuleList, level)
            for i, block in enumerate(blocks):
                x = block(x)
                if k:
                    last = i == len(blocks) - 1
                    x = F.interpolate(x, size=size if last else None, scale_factor=None if last else 2.0,
                                      mode="bilinear", align_corners=False)
            total = x if total is None else total + x
        return self.predictor(total)  # type: ignore[no-any-return]


class SemanticFPN(nn.Module):
    """``backbone`` (net + FPN) then :class:`SemanticFPNHead`; logits upsampled to the input size.

    :param backbone: the net with torchvision's FPN.
    :param head: the semantic head on its levels.
    """

    def __init__(self, backbone: FeaturePyramidBackbone, head: SemanticFPNHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Normalised pixels (B, 3, H, W) -> ``{"out": (B, num_classes, H, W)}``."""
        logits = self.head(list(self.backbone(pixels).values()))
        return OrderedDict(out=F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear",
                                             align_corners=False))


@checked_keywords
def segmenter(net: nn.Module, num_classes: int, arch: str = "deeplabv3", *, fpn_channels: int = 256,
              head_channels: int = 128) -> nn.Module:
    """A semantic segmenter on ``net`` (see the module docstring for both archs).

    :param net: an image net from ``Backbone.as_module()``.
    :param num_classes: classes per pixel (background included if you have one).
    :param arch: ``"deeplabv3"`` or ``"fpn"``.
    :param fpn_channels: channels of the FPN levels (``"fpn"`` only).
    :param head_channels: width of the semantic head's blocks (``"fpn"`` only).
    :raises ModalityError: ``net`` is a text net.
    :raises InputError: an unknown arch, ``num_classes < 1``, or ``"fpn"`` on a single stride.
    """
    from torchvision.models.segmentation import DeepLabV3
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    if arch not in ARCHS:
        raise InputError(f"Unknown segmenter arch {arch!r}; choose one of {', '.join(ARCHS)}.")
    info = NetInfo.of(net, "segmenter")
    info.require("image", "segmenter")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"segmenter() needs num_classes >= 1; got {num_classes!r}.")
    if arch == "deeplabv3":
        model: nn.Module = DeepLabV3(_LastMap(net, info.names[-1]),
                                     DeepLabHead(info.channels[-1], num_classes))
        return model
    picked = info.levels("segmenter", min_stride=4)
    strides = [int(info.strides[i]) for i in picked]  # type: ignore[arg-type]
    backbone = FeaturePyramidBackbone(net, [info.names[i] for i in picked],
                                      [info.channels[i] for i in picked], fpn_channels)
    return SemanticFPN(backbone, SemanticFPNHead(fpn_channels, strides, num_classes,
                                                 channels=head_channels))
