"""Object detectors: torchvision's own detection models on a trainable net with torchvision's FPN.

:func:`detector` returns a plain torchvision model (``FasterRCNN``, ``MaskRCNN``, ``RetinaNet`` or
``FCOS``) whose ``backbone`` is the net followed by ``torchvision.ops.FeaturePyramidNetwork``. Only
the wiring is written here; every part follows torchvision's own builders, matched to the net:

==========  ==================  ===========================  ===================================
arch        stages used         FPN extra levels             anchors per level (stride s)
==========  ==================  ===========================  ===================================
fasterrcnn  stride >= 4         ``LastLevelMaxPool`` (pool)  size 8s, ratios 0.5, 1, 2
maskrcnn    stride >= 4         ``LastLevelMaxPool`` (pool)  size 8s, ratios 0.5, 1, 2
retinanet   stride >= 8         ``LastLevelP6P7`` (p6, p7)   sizes 4s x 2**(0, 1/3, 2/3), 0.5, 1, 2
fcos        stride >= 8         ``LastLevelP6P7`` (p6, p7)   one point of size s
==========  ==================  ===========================  ===================================

For a ResNet with stages layer1..layer4 this is exactly torchvision's ``fasterrcnn_resnet50_fpn``
(anchors 32..512), ``retinanet_resnet50_fpn`` (32..512 on P3-P7) and ``fcos_resnet50_fpn`` (8..128).
The R-CNN box (7x7) and mask (14x14) ``MultiScaleRoIAlign`` read the stage levels, not the extra one.

Images: like every torchvision detection model, the detector takes a list of UNNORMALISED images,
float (3, H, W) in 0-1, and normalises them itself with ``net.mean``/``net.std`` (its
``GeneralizedRCNNTransform`` is set from them), so do not apply the net's ``transforms()``
normalisation first. Labels follow torchvision's COCO models: ``num_classes`` counts a background
class 0 (R-CNN) or an unused 0 (RetinaNet, FCOS); object labels are 1 .. num_classes - 1.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from hub.errors import InputError
from hub.heads._parts import FeaturePyramidBackbone, NetInfo, checked_keywords

__all__ = ["ARCHS", "detector"]

ARCHS = ("fasterrcnn", "retinanet", "fcos", "maskrcnn")
#: what detector() sets itself from the net (its own keywords and the wiring): not options
_WIRED = frozenset({"self", "backbone", "num_classes", "min_size", "max_size", "image_mean",
                    "image_std", "rpn_anchor_generator", "anchor_generator", "box_roi_pool",
                    "mask_roi_pool"})


@checked_keywords
def detector(net: nn.Module, num_classes: int, arch: str = "fasterrcnn", *, min_size: int = 800,
             max_size: int = 1333, fpn_channels: int = 256, **options: Any) -> nn.Module:
    """A torchvision detection model on ``net`` (see the module docstring for the wiring).

    In train mode ``model(images, targets)`` returns torchvision's dict of losses; in eval mode
    ``model(images)`` returns one dict per image with ``boxes`` (N, 4), ``scores``, ``labels`` and,
    for ``maskrcnn``, ``masks`` (N, 1, H, W).

    :param net: an image net from ``Backbone.as_module()`` with two or more strides (a ViT:
        ``as_module(pyramid=True)``).
    :param num_classes: classes including the background class 0 (torchvision's convention).
    :param arch: ``"fasterrcnn"``, ``"retinanet"``, ``"fcos"`` or ``"maskrcnn"``.
    :param min_size: images are resized so that their short side is ``min_size`` ...
    :param max_size: ... and their long side at most ``max_size`` (torchvision's transform).
    :param fpn_channels: channels of the FPN levels.
    :param options: passed on to the torchvision model class (e.g. ``box_score_thresh`` for the
        R-CNNs, ``score_thresh`` for RetinaNet and FCOS, ``detections_per_img``) or its image
        transform (``size_divisible``, ``fixed_size``); torchvision itself would ignore an
        unknown one, so it is refused here.
    :raises ModalityError: ``net`` is a text net.
    :raises InputError: an unknown arch or option, fewer than two classes, or stages at a single
        stride.
    """
    from torchvision.models import detection
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    if arch not in ARCHS:
        raise InputError(f"Unknown detector arch {arch!r}; choose one of {', '.join(ARCHS)}.")
    model_class = {"fasterrcnn": detection.FasterRCNN, "maskrcnn": detection.MaskRCNN,
                   "retinanet": detection.RetinaNet, "fcos": detection.FCOS}[arch]
    _check_options(arch, model_class, options)
    info = NetInfo.of(net, "detector")
    info.require("image", "detector")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(f"detector() needs num_classes >= 2 (the background class 0 and at least one "
                         f"object class); got {num_classes!r}.")
    if len(info.mean) != 3 or len(info.std) != 3:
        raise InputError(f"detector() needs the net's mean and std (3 values each) to normalise "
                         f"images; {info.label} has mean={info.mean}, std={info.std}.")
    rcnn = arch in ("fasterrcnn", "maskrcnn")
    picked = info.levels("detector", min_stride=4 if rcnn else 8, doubling=rcnn)
    names = [info.names[i] for i in picked]
    strides = [int(info.strides[i]) for i in picked]  # type: ignore[arg-type]
    extra_names = ["pool"] if rcnn else ["p6", "p7"]
    clash = sorted(set(names) & set(extra_names))
    if clash:
        raise InputError(f"detector() names its extra FPN levels {extra_names}, but {info.label} has "
                         f"stages named {clash}; request stages under other names.")
    extra = LastLevelMaxPool() if rcnn else LastLevelP6P7(fpn_channels, fpn_channels)
    backbone = FeaturePyramidBackbone(net, names, [info.channels[i] for i in picked], fpn_channels,
                                      extra_blocks=extra)
    level_strides = strides + [strides[-1] * 2 ** (k + 1) for k in range(len(extra_names))]
    common: dict[str, Any] = {"min_size": min_size, "max_size": max_size,
                              "image_mean": list(info.mean), "image_std": list(info.std)}
    common.update(options)
    if rcnn:
        anchors = AnchorGenerator(sizes=tuple((8 * s,) for s in level_strides),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * len(level_strides))
        box_pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
        if arch == "fasterrcnn":
            model: nn.Module = detection.FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors,
                                                    box_roi_pool=box_pool, **common)
            return model
        mask_pool = MultiScaleRoIAlign(featmap_names=names, output_size=14, sampling_ratio=2)
        model = detection.MaskRCNN(backbone, num_classes, rpn_anchor_generator=anchors,
                                   box_roi_pool=box_pool, mask_roi_pool=mask_pool, **common)
        return model
    if arch == "retinanet":
        octaves = [2 ** (i / 3) for i in range(3)]
        anchors = AnchorGenerator(sizes=tuple(tuple(int(4 * s * o) for o in octaves) for s in level_strides),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * len(level_strides))
        model = detection.RetinaNet(backbone, num_classes, anchor_generator=anchors, **common)
        return model
    anchors = AnchorGenerator(sizes=tuple((s,) for s in level_strides),
                              aspect_ratios=((1.0,),) * len(level_strides))
    model = detection.FCOS(backbone, num_classes, anchor_generator=anchors, **common)
    return model



def _check_options(arch: str, model_class: type, options: dict[str, Any]) -> None:
    """Refuse an option neither the torchvision model class nor its image transform names (both
    take ``**kwargs`` and drop what they do not know)."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    def named(cls: type) -> set[str]:
        return {n for n, p in inspect.signature(cls.__init__).parameters.items()  # type: ignore[misc]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    accepted = sorted((named(model_class) | named(GeneralizedRCNNTransform)) - _WIRED)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise InputError(f"detector(arch={arch!r}) has no option {unknown[0]!r}; besides num_classes, "
                         f"arch, min_size, max_size and fpn_channels it passes on these of "
                         f"torchvision's {model_class.__name__}: {', '.join(accepted)}.")
