"""Building a :class:`~hub.train.trunk.Trunk` (:meth:`hub.Backbone.as_module`).

:func:`build_trunk` checks the options, asks the provider for the body (``Backbone.trunk``),
maps each parameter to its stage with one forward (:mod:`hub.train.stagemap`), measures each
returned stage's channels and stride, freezes stages and batch norms (:mod:`hub.train.freeze`),
sets layer depths for layer decay (:mod:`hub.train.depth`), checks that checkpointing finds
blocks (:mod:`hub.train.checkpoint`), puts on an adapter (:mod:`hub.train.adapters`) and wraps
a pyramid (:mod:`hub.train.pyramid`) where asked; the trunk keeps a weightless view of its parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from hub.errors import InputError
from hub.features import StageSpec
from hub.train import freeze as fz
from hub.train.checkpoint import checkpoint_blocks
from hub.train.depth import layer_depths
from hub.train.stagemap import map_stages
from hub.train.trunk import BODY, Trunk

if TYPE_CHECKING:
    from hub.backbone import Backbone
    from hub.provider import NormLayer
    from hub.train.adapters import AdapterConfig

__all__ = ["build_trunk"]


class _Skeleton(torch.nn.Module):
    """The keys, shapes and dtypes of a module's state dict, as meta tensors (no weights, no
    submodules): what :meth:`Trunk.parent_state_dict` and saving read of the parent's module.
    Made from ``state_dict()`` directly: a deep copy of the network onto the meta device walked
    every submodule (12 ms against 1 ms on a ResNet-50, 25 ms against 2 ms on a ViT-B/16)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self._meta = {k: torch.empty_like(v, device="meta") for k, v in module.state_dict().items()}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The parent module's keys, each a meta tensor of its shape and dtype."""
        return dict(self._meta)


def _light_parent(backbone: Backbone, body: torch.nn.Module) -> tuple[Backbone, dict[str, torch.Tensor]]:
    """What the trunk keeps of its parent without keeping the parent's weights alive: a shallow
    copy of the Backbone (spec, weights record, tokenizer, device) whose module is a
    :class:`_Skeleton` (keys, shapes, dtypes), and the parent's tensors the trunk does not hold
    itself (the layers after the last stage, for :meth:`Trunk.parent_state_dict`). A
    fine-tuning run so holds one copy of the weights, as timm's or torchvision's own models do."""
    import copy

    module = backbone.module
    held = {k.removeprefix("model.") for k in body.state_dict()}
    rest = {k: v for k, v in module.state_dict().items() if k not in held}
    view = copy.copy(backbone)
    for attr, value in list(vars(view).items()):
        if isinstance(value, torch.nn.Module):  # e.g. a provider's extractor over the same weights
            setattr(view, attr, None)
    if backbone.two_tower is not None:  # a tower: net.save writes the image-text entry
        view.spec = backbone.two_tower.spec
    view.two_tower = None  # (it holds the weights too)
    view.module = _Skeleton(module)
    return view, rest


def _requested(backbone: Backbone, stages: Sequence[int | str] | int | str | None) -> list[str]:
    if stages is None:
        return list(backbone.stage_specs)
    from hub.features import resolve_stages

    return resolve_stages(list(backbone.stage_specs), stages, model=backbone.name)


def _example(backbone: Backbone, body: torch.nn.Module) -> tuple[Any, int | None]:
    """The stage-mapping forward's input: two short texts, or one image at the body's
    ``trace_size`` (the smallest size it takes; token models with a fixed grid: the manifest's
    size). ``probe_size``, this attribute's former name, is still read."""
    if backbone.modality == "text":
        from hub.backbone import TextBackbone

        text = backbone if isinstance(backbone, TextBackbone) else None
        if text is None:
            raise InputError(f"{backbone.name}: a text trunk needs a TextBackbone.")
        enc = dict(text.tokenize(["a short text to probe the trunk", "hi"], text.max_length))
        enc.pop("overflow", None)
        return {k: v.to(backbone.device) for k, v in enc.items()}, None
    size = (getattr(body, "trace_size", None) or getattr(body, "probe_size", None)
            or backbone.spec.preprocessing.image.size)  # type: ignore[union-attr]
    p = next(body.parameters())
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(
        device=p.device, dtype=p.dtype), size


def build_trunk(backbone: Backbone, stages: Sequence[int | str] | int | str | None = None, *,
                freeze: str | int | None = None, norm: str = "train",
                output_stride: int | None = None, grad_checkpointing: bool = False,
                pyramid: bool = False, adapter: AdapterConfig | None = None) -> torch.nn.Module:
    """Build the trainable module of ``backbone`` (arguments: :meth:`hub.Backbone.as_module`;
    ``adapter``: :func:`hub.train.adapters.adapter_config`'s checked options)."""
    fz.check_norm(norm)
    if output_stride is not None and (isinstance(output_stride, bool) or output_stride not in (8, 16, 32)):
        raise InputError(f"output_stride must be 8, 16, 32 or None, got {output_stride!r}.")
    if output_stride is not None and backbone.modality != "image":
        raise InputError(f"output_stride applies to image backbones; {backbone.name} takes text.")
    requested = _requested(backbone, stages)
    if not requested:
        raise InputError("as_module needs at least one stage.")
    all_names = list(backbone.stage_specs)
    built = all_names[:all_names.index(requested[-1]) + 1]
    count = fz.freeze_count(freeze, built, what=backbone.name)
    body = backbone.trunk(built, output_stride)
    # training keeps float32 master weights, whatever precision the backbone runs extract() in
    # (dtype="bfloat16"/"auto" casts its weights): autocast the forward for reduced precision
    if any(t.is_floating_point() and t.dtype != torch.float32
           for t in (*body.parameters(), *body.buffers())):
        body.float()
    kept = fz.frozen_batchnorm(body, _norm_layers(backbone)) if norm == "frozen" else []
    body.requires_grad_(True)
    net = Trunk(backbone, body, built, requested)
    net.eval()
    example, size = _example(backbone, body)
    found = map_stages(net, lambda: net._all(example), built, what=backbone.name, size=size)
    net.stage_specs = [_measured(backbone.stage_specs[n], found.shapes[n], size, output_stride is not None)
                 for n in requested]
    net._depth, net._num_layers = layer_depths(body, found.stage_of, "body.")
    if not net._depth:  # no repeated blocks: one layer per manifest stage, the stem at 0
        first = getattr(body, "stage_paths", {}).get(built[0])
        for name, k in found.stage_of.items():
            stem = k == 0 and first is not None and not name.startswith(f"{BODY}{first}.")
            net._depth[name] = 0 if stem else k + 1
        net._num_layers = len(built)
    frozen = {n for n, k in found.stage_of.items() if k < count}
    for name, p in net.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    for name, sub in body.named_modules():  # batch norms "frozen" kept: nothing of them trains
        if name in kept:
            sub.requires_grad_(False)
    net._eval_norms = fz.norms_in_eval(net, frozen, all_norms=norm != "train")
    if grad_checkpointing and checkpoint_blocks(body) == 0:
        raise InputError(f"{backbone.name}: grad_checkpointing found no repeated blocks to "
                         "checkpoint in this architecture; use grad_checkpointing=False.")
    net._pooling = [backbone.pool_head(requested[-1])]
    net._parent, net._parent_rest = _light_parent(backbone, body)
    if adapter is not None:
        _adapt(net, backbone, adapter, frozen)
    if pyramid:
        from hub.train.pyramid import PyramidNet

        return PyramidNet(net.train()).train()
    return net.train()


def _adapt(net: Trunk, backbone: Backbone, config: AdapterConfig, frozen: set[str]) -> None:
    """Put the adapter on the trunk (:func:`hub.train.adapters.attach`); every batch norm then
    runs in eval mode (``norm="train"`` included): its running statistics are the base's, which
    the saved adapter does not carry."""
    from hub.train import adapters as ad

    if backbone.spec.adapter is not None:
        raise InputError(f"{backbone.name} is a saved adapter already applied to "
                         f"{backbone.spec.adapter.base}; adapters do not stack. Train it without "
                         "adapter=, or load the parent and train a new adapter.")
    names, net.peft_config, net._depth = ad.attach(
        net, net.network, ad.provider_rules(backbone.provider), config, frozen=frozen,
        depth=net._depth, prefix=BODY, what=backbone.name)
    net._eval_norms = fz.norms_in_eval(net, set(), all_norms=True)
    net.adapter, net.adapter_targets = config, names


def _norm_layers(backbone: Backbone) -> dict[type, NormLayer]:
    """The library batch-norm subclasses the backbone's provider declares
    (:meth:`hub.provider.Provider.norm_layers`), for ``norm="frozen"``."""
    provider = backbone.provider
    return provider.norm_layers() if provider is not None else {}


def _measured(spec: StageSpec, shape: tuple[int, ...], size: int | None, dilated: bool) -> StageSpec:
    """The stage's spec with channels and stride measured by the stage-mapping forward."""
    if spec.layout != "NCHW" or size is None or len(shape) != 4:
        return spec
    stride = size // shape[-1] if shape[-1] else spec.stride
    if not dilated and (shape[1] != spec.channels or stride != spec.stride):
        raise InputError(f"stage {spec.name!r}: the manifest says {spec.channels} channels at stride "
                         f"{spec.stride}, the module gives {shape[1]} at stride {stride}.")
    return StageSpec(spec.name, int(shape[1]), stride, spec.layout, spec.index)
