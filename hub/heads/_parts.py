"""What every head reads from a trainable net, and the net + FPN module the detectors and the FPN
segmenter share.

A trainable net (``Backbone.as_module``) describes its stages (``stage_names``, ``out_channels``,
``strides``, ``modality``, ``mean``/``std``); heads are built from that description, never from numbers
typed by hand. :class:`NetInfo` reads it once and holds the checks with the messages that say what to
do: a text net given to an image head, a single-stride ViT given to a head that needs a pyramid.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import torch
from torch import nn

from hub.errors import InputError, ModalityError

if TYPE_CHECKING:
    from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

__all__ = ["FeaturePyramidBackbone", "NetInfo", "checked_keywords"]

P = ParamSpec("P")
R = TypeVar("R")

_OTHER_HEADS = {
    "image": "hub.heads.classifier, detector or segmenter",
    "text": "hub.heads.text_classifier or token_classifier",
}


def checked_keywords(head: Callable[P, R]) -> Callable[P, R]:
    """``head``, raising :class:`InputError` that names an unknown keyword and lists the ones it
    takes (instead of Python's ``TypeError``); a head with ``**options`` checks those itself."""
    params = inspect.signature(head).parameters
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())

    @functools.wraps(head)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        unknown = [] if open_ended else [k for k in kwargs if k not in takes]
        if unknown:
            raise InputError(f"{head.__name__}() has no keyword {unknown[0]!r}; it takes "
                             f"{', '.join(takes)}.")
        return head(*args, **kwargs)

    return call


@dataclass(frozen=True)
class NetInfo:
    """The stages of a trainable net, as its contract attributes describe them.

    :param label: how messages name the net (its backbone name when known).
    """

    label: str
    modality: str
    names: list[str]
    channels: list[int]
    strides: list[int | None]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooled_width: int

    @classmethod
    def of(cls, net: nn.Module, head: str) -> NetInfo:
        """Read ``net``'s contract attributes.

        :param head: the head being built, for messages.
        :raises InputError: ``net`` is not a trainable net (from ``Backbone.as_module()``).
        """
        missing = [a for a in ("modality", "stage_names", "out_channels", "strides", "pool")
                   if not hasattr(net, a)]
        if missing:
            raise InputError(f"{head}() needs a trainable net from Backbone.as_module(); this "
                             f"{type(net).__name__} has no {', '.join(missing)}. Build it with "
                             "hub.load(name).as_module(...).")
        spec = getattr(net, "spec", None)
        name = getattr(spec, "name", None)
        channels = [int(c) for c in net.out_channels]  # type: ignore[union-attr]
        if not channels:
            raise InputError(f"{head}() got a net that returns no stages; request some with "
                             "as_module(stages=[...]).")
        width = getattr(net, "num_features", None)
        image = str(net.modality) == "image"  # text nets have no mean/std (their property raises)
        return cls(label=repr(name) if name else f"this {type(net).__name__}",
                   modality=str(net.modality),
                   names=[str(n) for n in net.stage_names],  # type: ignore[union-attr]
                   channels=channels,
                   strides=[None if s is None else int(s) for s in net.strides],  # type: ignore[union-attr]
                   mean=tuple(float(v) for v in getattr(net, "mean", None) or ()) if image else (),
                   std=tuple(float(v) for v in getattr(net, "std", None) or ()) if image else (),
                   pooled_width=int(width) if width else channels[-1])

    def require(self, modality: str, head: str) -> None:
        """Raise :class:`ModalityError` unless the net is of ``modality``."""
        if self.modality != modality:
            raise ModalityError(f"{head}() takes a{'n' if modality == 'image' else ''} {modality} "
                                f"backbone; {self.label} is a {self.modality} backbone. Use "
                                f"{_OTHER_HEADS.get(self.modality, 'another head')} instead.")

    def levels(self, head: str, *, min_stride: int = 1, doubling: bool = False) -> list[int]:
        """Indices of the stages a multi-level head uses: strides >= ``min_stride``, increasing.

        :param doubling: each stride must be twice the previous (torchvision's ``MultiScaleRoIAlign``
            maps boxes to consecutive levels ``2**k``).
        :raises InputError: fewer than two strides (a single-stride ViT: use ``pyramid=True``), or
            stages that do not fit.
        """
        if len(set(self.strides)) < 2:
            raise InputError(
                f"{head}() needs feature maps at two or more strides; {self.label} returns "
                f"{self.names} at stride {self.strides[-1]} only. For a single-stride backbone "
                "(ViT, DINOv2) build the net with as_module(pyramid=True); for a CNN request several "
                "stages, e.g. as_module(stages=[...]) with the last three or four.")
        picked = [i for i, s in enumerate(self.strides) if s is not None and s >= min_stride]
        strides = [s for s in self.strides if s is not None and s >= min_stride]
        why = ""
        if len(picked) < 2:
            why = f"fewer than two of them are at stride {min_stride} or coarser"
        elif any(b <= a for a, b in pairwise(strides)):
            why = "their strides do not increase from one stage to the next"
        elif doubling and any(b != 2 * a for a, b in pairwise(strides)):
            why = "each stage's stride must be twice the previous one"
        if why:
            raise InputError(f"{head}() cannot use the stages {self.names} (strides {self.strides}) of "
                             f"{self.label}: {why}. Request one stage per stride with "
                             "as_module(stages=[...]).")
        return picked


class FeaturePyramidBackbone(nn.Module):
    """``net`` followed by torchvision's ``FeaturePyramidNetwork`` on some of its stages.

    What torchvision's detection models take as ``backbone`` (an ``out_channels`` attribute and an
    ``OrderedDict`` of maps), laid out as torchvision's ``BackboneWithFPN`` (``body``, ``fpn``). The
    output keys are the stage names, then the extra block's (``pool``, or ``p6`` and ``p7``).

    :param net: the trainable net.
    :param names: the stages fed to the FPN, finest first.
    :param in_channels: their channels.
    :param out_channels: channels of every FPN level.
    :param extra_blocks: torchvision's ``LastLevelMaxPool`` / ``LastLevelP6P7``, or ``None``.
    """

    def __init__(self, net: nn.Module, names: Sequence[str], in_channels: Sequence[int],
                 out_channels: int, extra_blocks: ExtraFPNBlock | None = None) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

        super().__init__()
        self.body = net
        self.names = list(names)
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: Any) -> OrderedDict[str, torch.Tensor]:
        """Pixels (or a batch) -> the FPN levels, finest first."""
        out = self.body(x)
        return self.fpn(OrderedDict((n, out[n]) for n in self.names))  # type: ignore[no-any-return]
