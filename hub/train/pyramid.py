"""The ViTDet "simple feature pyramid": one stride-16 (or 14, 8) map -> maps at strides 4, 8, 16, 32.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet, 2022),
build the pyramid from the LAST map of a plain ViT only, each level by its own small branch::

    scale 4    deconv 2x2/2 -> norm -> GELU -> deconv 2x2/2   (channels C -> C/2 -> C/4)
    scale 2    deconv 2x2/2                                    (C -> C/2)
    scale 1    identity
    scale 1/2  max-pool 2x2/2
    each       -> conv 1x1 + norm -> conv 3x3 + norm           (-> out_channels)

:class:`SimpleFeaturePyramid` generalises the scale to ``2**k`` for the nearest integer ``k`` (k
deconvolutions up, k max-pools down), so a stride-8 map gets one deconvolution fewer. Every level is
returned at exactly ``ceil(H / stride) x ceil(W / stride)`` for an H x W input: max-pools round up,
as torchvision's own ``LastLevelMaxPool`` does, and a map whose stride is not a power of two
(DINOv2's 14) is resized bilinearly to that size after its branch.

:class:`PyramidNet` wraps a single-stride trainable net (the contract of ``Backbone.as_module``) and
exposes the same attributes, with the levels named ``p2`` .. ``p5`` (``p<log2 stride>``, as in
detectron2 and torchvision's detection code), so that any image backbone can feed a detector.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hub.compat import renamed
from hub.errors import InputError, ModalityError
from hub.features import StageSpec

__all__ = ["PyramidNet", "SimpleFeaturePyramid", "level_name"]

NormLayer = Callable[[int], nn.Module]


def level_name(stride: int) -> str:
    """``p<k>`` for a stride ``2**k`` (``p2`` for stride 4), else ``s<stride>``."""
    k = math.log2(stride)
    return f"p{int(k)}" if k.is_integer() else f"s{stride}"


def _layer_norm_2d(channels: int) -> nn.Module:
    from torchvision.models.convnext import LayerNorm2d

    norm: nn.Module = LayerNorm2d(channels, eps=1e-6)
    return norm


class SimpleFeaturePyramid(nn.Module):
    """Maps at several strides from one map (ViTDet), one branch per output stride.

    :param in_channels: channels of the input map.
    :param in_stride: stride of the input map relative to the image (16 for ViT-B/16, 14 for DINOv2).
    :param out_channels: channels of every output level (256 as in ViTDet and torchvision's FPN).
    :param strides: output strides, finest first.
    :param norm_layer: ``norm_layer(channels)`` after each convolution; default: LayerNorm over
        channels (torchvision's ``LayerNorm2d``), as ViTDet uses.
    """

    def __init__(self, in_channels: int, in_stride: int, *, out_channels: int = 256,
                 strides: Sequence[int] = (4, 8, 16, 32), norm_layer: NormLayer | None = None) -> None:
        from torchvision.ops.misc import Conv2dNormActivation

        super().__init__()
        if in_channels < 1 or in_stride < 1 or out_channels < 1 or not strides:
            raise InputError(f"SimpleFeaturePyramid needs positive channels, a stride and output "
                             f"strides; got in_channels={in_channels}, in_stride={in_stride}, "
                             f"out_channels={out_channels}, strides={list(strides)}.")
        if list(strides) != sorted(set(strides)):
            raise InputError(f"Pyramid strides must increase, finest first; got {list(strides)}.")
        norm = norm_layer or _layer_norm_2d
        self.in_stride = in_stride
        self.strides = [int(s) for s in strides]
        self.out_channels = out_channels
        self.branches = nn.ModuleList()
        for stride in self.strides:
            k = round(math.log2(in_stride / stride))
            layers: list[nn.Module] = []
            dim = in_channels
            for i in range(max(k, 0)):
                if i:
                    layers += [norm(dim), nn.GELU()]
                layers.append(nn.ConvTranspose2d(dim, max(dim // 2, 1), kernel_size=2, stride=2))
                dim = max(dim // 2, 1)
            layers += [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True) for _ in range(max(-k, 0))]
            layers += [
                Conv2dNormActivation(dim, out_channels, kernel_size=1, norm_layer=norm,
                                     activation_layer=None),
                Conv2dNormActivation(out_channels, out_channels, kernel_size=3, norm_layer=norm,
                                     activation_layer=None),
            ]
            self.branches.append(nn.Sequential(*layers))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):  # ViTDet's "MSRA fill"
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, image_size: Sequence[int] | None = None) -> list[torch.Tensor]:
        """One map per output stride, finest first.

        :param x: (B, C, h, w) map at ``in_stride``.
        :param image_size: (H, W) of the input image; every level is then exactly
            ``ceil(H / stride) x ceil(W / stride)`` (default: ``h * in_stride, w * in_stride``).
        """
        height, width = (image_size[-2], image_size[-1]) if image_size is not None else (
            x.shape[-2] * self.in_stride, x.shape[-1] * self.in_stride)
        levels = []
        for stride, branch in zip(self.strides, self.branches, strict=True):
            y = branch(x)
            size = (-(-height // stride), -(-width // stride))
            if tuple(y.shape[-2:]) != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            levels.append(y)
        return levels


class PyramidNet(nn.Module):
    """A single-stride trainable net (ViT) made multi-stride by a :class:`SimpleFeaturePyramid`.

    ``PyramidNet(net)(pixels)`` -> ``OrderedDict`` ``{"p2": (B, 256, H/4, W/4), ..., "p5": ...}``,
    with ``stage_specs``, ``stage_names``, ``out_channels``, ``strides``, ``modality``, ``spec``, ``mean``,
    ``std``, ``transforms``, ``param_groups``, ``save`` and ``parent_state_dict`` as the contract
    of ``Backbone.as_module`` says. The pyramid is built on the net's last returned stage.

    :param net: a trainable image net whose returned stages all share one stride.
    :param out_channels: channels of every level.
    :param strides: output strides, finest first.
    :param norm_layer: the pyramid's norm (default LayerNorm over channels, as ViTDet).
    """

    #: Deprecated: the old name of :attr:`stage_specs` (warns).
    specs = renamed("specs", "stage_specs")

    def __init__(self, net: nn.Module, *, out_channels: int = 256, strides: Sequence[int] = (4, 8, 16, 32),
                 norm_layer: NormLayer | None = None) -> None:
        super().__init__()
        label = _label(net)
        if getattr(net, "modality", None) != "image":
            raise ModalityError(f"A feature pyramid needs an image backbone; {label} is "
                                f"{getattr(net, 'modality', 'not an image backbone')!s}.")
        in_strides = [int(s) for s in net.strides]  # type: ignore[union-attr]
        if not in_strides:
            raise InputError(f"{label} returns no stages; request at least one with as_module(stages=...).")
        if len(set(in_strides)) > 1:
            raise InputError(f"{label} already returns several strides {in_strides}; the simple feature "
                             "pyramid is for single-stride backbones (ViT, DINOv2). Feed the stages "
                             "to a detector or segmenter as they are.")
        self.net = net
        self.pyramid = SimpleFeaturePyramid(int(net.out_channels[-1]), in_strides[-1],  # type: ignore[index]
                                            out_channels=out_channels, strides=strides,
                                            norm_layer=norm_layer)
        self._source = str(net.stage_names[-1])  # type: ignore[index]
        self.stage_names = [level_name(s) for s in self.pyramid.strides]
        self.strides = list(self.pyramid.strides)
        self.out_channels = [out_channels] * len(self.strides)
        self.stage_specs = [StageSpec(name=n, channels=out_channels, stride=s, layout="NCHW")
                      for n, s in zip(self.stage_names, self.strides, strict=True)]
        self.modality = "image"

    @property
    def spec(self) -> Any:
        """The manifest's ``BackboneSpec`` of the wrapped net."""
        return getattr(self.net, "spec", None)

    @property
    def mean(self) -> tuple[float, ...]:
        """The weights' normalisation mean (the wrapped net's)."""
        return tuple(self.net.mean)  # type: ignore[arg-type]

    @property
    def std(self) -> tuple[float, ...]:
        """The weights' normalisation std (the wrapped net's)."""
        return tuple(self.net.std)  # type: ignore[arg-type]

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Pixels normalised with ``mean``/``std`` (B, 3, H, W) -> the pyramid levels, finest first."""
        x = self.net(pixels)[self._source]
        return OrderedDict(zip(self.stage_names, self.pyramid(x, pixels.shape[-2:]), strict=True))

    def pool(self, out: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C): the average of the coarsest level. The pyramid is new, so there is no trained
        pooling to follow; for a classifier prefer the net without a pyramid."""
        return out[self.stage_names[-1]].mean(dim=(2, 3))

    def transforms(self, train: bool = False) -> Any:
        """The wrapped net's ``transforms(train=...)``."""
        return self.net.transforms(train=train)  # type: ignore[operator]

    def param_groups(self, lr: float, weight_decay: float = 0.0,
                     layer_decay: float | None = None) -> list[dict[str, Any]]:
        """The wrapped net's groups, then the pyramid's at the full ``lr`` (it sits above the last
        layer): convolution weights with ``weight_decay``, norms and biases without."""
        groups: list[dict[str, Any]] = list(self.net.param_groups(  # type: ignore[operator]
            lr=lr, weight_decay=weight_decay, layer_decay=layer_decay))
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for p in self.pyramid.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        groups += [{"params": ps, "lr": lr, "weight_decay": wd}
                   for ps, wd in ((decay, weight_decay), (no_decay, 0.0)) if ps]
        return groups

    def save(self, directory: Any, name: str | None = None) -> Any:
        """Save the wrapped net (the backbone's own weights; the pyramid is head weights, saved with
        the rest of a model's ``state_dict``)."""
        return self.net.save(directory, name=name)  # type: ignore[operator]

    def parent_state_dict(self) -> dict[str, torch.Tensor]:
        """The wrapped net's ``parent_state_dict()``."""
        return dict(self.net.parent_state_dict())  # type: ignore[operator]


def _label(net: nn.Module) -> str:
    spec = getattr(net, "spec", None)
    name = getattr(spec, "name", None)
    return repr(name) if name else f"this {type(net).__name__}"
