"""The trainable trunk of a timm backbone (``TimmBackbone.trunk``).

A copy of the model (or, for ``output_stride``, the same architecture built with timm's
``output_stride=`` and the same weights) pruned by timm's ``prune_intermediate_layers``: the
classifier head always goes, the final norm / head convolution stays only when the last stage is
``forward_features``, and the stages after the last one go. One ``forward_intermediates`` pass
gives every stage; hooked stages (HRNet's raw branches ``stage4[i]``) are captured by forward
hooks during that pass. When the last stage is hooked, HRNet's increase modules (which feed only
the feature_info stages after it) are dropped.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from hub.sdk import InputError

if TYPE_CHECKING:
    from hub_timm.provider import TimmBackbone

__all__ = ["TimmBody", "TimmPoolHead", "timm_pool_head", "timm_trunk"]


class TimmBody(torch.nn.Module):
    """Model inputs -> raw stage outputs of a pruned timm model."""

    def __init__(self, model: torch.nn.Module, names: list[str], indices: dict[str, int | None],
                 hooks: dict[str, tuple[str, int | None]], stage_paths: dict[str, str]) -> None:
        super().__init__()
        self.model = model
        self._names = names
        self._indices = {n: indices[n] for n in names if n in indices}
        self._hooks = {n: hooks[n] for n in names if n in hooks}
        self._final = any(i is None for i in self._indices.values())
        self._take = sorted({i for i in self._indices.values() if i is not None})
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self._with_prefix = self.num_prefix_tokens > 0
        self.stage_paths = stage_paths
        # token models with a fixed patch grid take only their own size; others any multiple of 32
        fixed = hasattr(model, "patch_embed") and not getattr(model, "dynamic_img_size", False)
        self.trace_size = None if fixed else 64

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        captured: dict[str, Any] = {}
        handles = []
        for n, (path, index) in self._hooks.items():
            def keep(_m: Any, _i: Any, out: Any, n: str = n, index: int | None = index) -> None:
                captured[n] = out if index is None else out[index]
            handles.append(self.model.get_submodule(path).register_forward_hook(keep))
        try:
            kw: dict[str, Any] = {"return_prefix_tokens": True} if self._with_prefix else {}
            take = self._take or [0]
            model: Any = self.model  # forward_intermediates: a method of the timm architecture
            if self._final:
                final, inter = model.forward_intermediates(x, indices=take, **kw)
            else:
                final, inter = None, model.forward_intermediates(
                    x, indices=take, intermediates_only=True, **kw)
        finally:
            for h in handles:
                h.remove()
        by_index = dict(zip(take, inter, strict=False))
        out: dict[str, Any] = {}
        for n in self._names:
            if n in self._hooks:
                out[n] = captured[n]
            else:
                i = self._indices[n]
                out[n] = final if i is None else by_index[i]
        return out


def _prune(model: torch.nn.Module, take: list[int], final: bool, hooked_last: bool, n_info: int) -> None:
    """Drop what comes after the last stage (timm's own pruning; the stage map drops any classifier
    part that never runs, e.g. ConvNeXt's head norm)."""
    timm_model: Any = model  # prune_intermediate_layers: a method of the timm architecture
    if final:  # every stage and the final norm / head convs / HRNet's aggregation head run
        return
    if hooked_last:
        timm_model.prune_intermediate_layers(indices=list(range(n_info)), prune_norm=True,
                                             prune_head=True)
        if getattr(model, "incre_modules", None) is not None:
            model.incre_modules = torch.nn.ModuleList()
        return
    timm_model.prune_intermediate_layers(indices=take, prune_norm=True, prune_head=True)


def timm_trunk(bb: TimmBackbone, stages: list[str], output_stride: int | None) -> TimmBody:
    """The body for ``stages`` (every manifest stage up to the last requested one)."""
    import timm

    src = bb.module
    if output_stride is None:
        model = copy.deepcopy(src)
        for m in model.modules():  # the extract() capture hooks stay with the parent
            m._forward_hooks.clear()
    else:
        model = _dilated(bb, output_stride, timm)
    model.train()
    feature_info: Any = model.feature_info  # timm's FeatureInfo: one dict per stage
    info = [f["module"] for f in feature_info]
    take = sorted({i for n in stages if (i := bb._indices.get(n)) is not None})
    final = any(n in bb._indices and bb._indices[n] is None for n in stages)
    hooked_last = stages[-1] in bb._hooks
    _prune(model, take, final, hooked_last, len(info))
    paths = {n: info[i] for n, i in bb._indices.items() if i is not None}
    return TimmBody(model, stages, bb._indices, bb._hooks, paths)


def _dilated(bb: TimmBackbone, output_stride: int, timm: Any) -> torch.nn.Module:
    """The same architecture with ``output_stride`` and the backbone's weights."""
    arch = bb.spec.architecture
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=0, output_stride=output_stride)
    except (TypeError, AssertionError, ValueError, NotImplementedError) as exc:
        raise InputError(f"{bb.name} ({arch}) cannot change its output stride ({exc}). "
                         f"output_stride works for {', '.join(DILATABLE)}; use output_stride=None "
                         "or a ViT pyramid (pyramid=True).") from exc
    reductions = [f["reduction"] for f in model.feature_info]
    if max(reductions) > output_stride:
        raise InputError(f"{bb.name} ({arch}) ignores output_stride={output_stride}. output_stride "
                         f"works for {', '.join(DILATABLE)}; use output_stride=None.")
    ref = bb.module.state_dict()
    state = {k: v.detach().clone() for k, v in ref.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{bb.name}: the dilated {arch} does not take the backbone's weights "
                         f"(missing {missing[:4]}, unexpected {unexpected[:4]}); use output_stride=None.")
    p = next(bb.module.parameters())
    moved: torch.nn.Module = model.to(device=p.device, dtype=p.dtype)
    return moved


#: zoo entries (timm) whose output stride can be 8 or 16 by dilation, as measured by
#: docs/gen_training_support.py (MobileNetV3, VGG, DenseNet, HRNet, Swin and ViTs cannot)
DILATABLE = ("resnet50/101/152", "convnext_*", "efficientnet_b*", "efficientnetv2_s", "mobilenet_v2",
             "regnety_032")


class TimmPoolHead(torch.nn.Module):
    """timm's pre-logits pooling of the final map (pool, then its head norm): ``forward_head(x,
    pre_logits=True)`` of a copy of the model that keeps only the modules that pooling runs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model: Any = self.model  # forward_head: a method of the timm architecture
        return model.forward_head(x, pre_logits=True)  # type: ignore[no-any-return]


def timm_pool_head(bb: TimmBackbone) -> TimmPoolHead | None:
    """The trained part of timm's pre-logits pooling of a CNN's final map, or ``None`` when it has
    no parameters or the final output is not an NCHW map (token models pool in the core)."""
    src = bb.module
    spec = bb.stage_specs[list(bb.stage_specs)[-1]]
    final_map = torch.zeros(1, spec.channels, 2, 2, device=next(src.parameters()).device)
    model = copy.deepcopy(src).float()  # trains in float32 whatever extract() runs in
    for m in model.modules():
        m._forward_hooks.clear()
    ran: set[int] = set()
    handles = [m.register_forward_hook(lambda mod, _i, _o: ran.add(id(mod))) for m in model.modules()]
    timm_model: Any = model
    try:
        with torch.no_grad():
            out = timm_model.forward_head(final_map, pre_logits=True)
    except (RuntimeError, ValueError, IndexError):  # not a pooling of NCHW maps (token models)
        return None
    finally:
        for h in handles:
            h.remove()
    if (any(True for _ in model.parameters(recurse=False))  # class tokens: a token model
            or tuple(out.shape) != (1, bb.spec.outputs.embedding_dim)
            or not any(True for m in model.modules() if id(m) in ran for _ in m.parameters(recurse=False))):
        return None

    def prune(parent: torch.nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if not any(True for _ in child.parameters()):
                continue
            if not any(id(m) in ran for m in child.modules()):
                setattr(parent, name, torch.nn.Identity())
            else:
                prune(child)

    prune(model)
    model.requires_grad_(True).train()
    return TimmPoolHead(model)
