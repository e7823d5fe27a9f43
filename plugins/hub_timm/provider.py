"""The timm provider: any ``timm.create_model`` architecture as a hub backbone.

Stages map onto timm's ``feature_info``: a manifest stage's ``module`` is a
feature_info module name (``layer4``, ``blocks.6``...), or ``forward_features``
for the final (normed / head-conv) features. All requested stages come from one
``forward_intermediates`` pass. The classification head is dropped: backbones
give features, and the head's weights are not loaded.

A ``module`` that feature_info does not name is a submodule path whose output is
captured by a forward hook during that same pass, with ``[i]`` picking one element
of a list output (the hooks stay registered and capture only inside ``extract``, per
thread): HRNet's raw branches are ``stage4[0]`` .. ``stage4[3]`` (what
timm's ``features_only=True, feature_location=''`` returns), which a segmentation
head wants rather than the classification-oriented feature_info maps.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from typing import TYPE_CHECKING, Any

from hub.sdk import (
    ImageBackbone,
    ManifestError,
    NormLayer,
    Provider,
    RawOutput,
    StageSpec,
    TargetRules,
    WeightFiles,
    build_module,
    require,
)

if TYPE_CHECKING:
    import torch

    from hub.sdk import BackboneSpec

__all__ = ["TimmBackbone", "TimmProvider"]

FINAL = "forward_features"
_HOOK = re.compile(r"^(?P<path>[A-Za-z_][\w.]*)(?:\[(?P<index>\d+)\])?$")


class TimmBackbone(ImageBackbone):
    """An image backbone backed by a timm model."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 indices: dict[str, int | None],
                 hooks: dict[str, tuple[str, int | None]] | None = None, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self._indices = indices  # stage name -> feature_info index, None for the final features
        self._hooks = hooks or {}  # stage name -> (submodule path, list index) captured by hooks
        # hooks stay registered; each thread's extract() sets its own capture dict, so concurrent
        # calls on one backbone never see each other's maps, and nothing is kept otherwise
        self._local = threading.local()
        for n, (path, index) in self._hooks.items():
            module.get_submodule(path).register_forward_hook(_keeper(self._local, n, index))
        # timm's pre-logits (pool + any head norm or head conv) are the embedding when they have
        # the manifest's width; else (MobileNetV3's and VGG's head convs) the core pools the map
        width = getattr(module, "head_hidden_size", None) or getattr(module, "num_features", None)
        self._own_pool = width == spec.outputs.embedding_dim

    def forward(self, batch: torch.Tensor, stages: list[str]) -> RawOutput:
        last = list(self.stage_specs)[-1]
        wanted = [*stages, last]
        hooked = [n for n in dict.fromkeys(wanted) if n in self._hooks]
        if not hooked:
            return self._pass(batch, wanted, {})
        captured: dict[str, Any] = dict.fromkeys(hooked)
        self._local.captured = captured
        try:
            return self._pass(batch, [n for n in wanted if n not in self._hooks], captured)
        finally:
            self._local.captured = None

    def _pass(self, batch: torch.Tensor, wanted: list[str], captured: dict[str, Any]) -> RawOutput:
        """One forward: feature_info stages by index, hooked stages land in ``captured``."""
        m: Any = self.module  # timm's forward_intermediates / forward_head: per-architecture methods
        take = sorted({i for n in wanted if (i := self._indices[n]) is not None})
        prefix = int(getattr(m, "num_prefix_tokens", 0) or 0)
        prefixes: dict[int, Any] = {}
        if take:
            with_prefix = prefix > 0 and "return_prefix_tokens" in _params(m.forward_intermediates)
            if with_prefix:
                final, inter = m.forward_intermediates(batch, indices=take, return_prefix_tokens=True)
                prefixes = {i: p for i, (_, p) in zip(take, inter, strict=False)}
                inter = [grid for grid, _ in inter]
            else:
                final, inter = m.forward_intermediates(batch, indices=take)
            by_index = dict(zip(take, inter, strict=False))
        else:
            final, by_index = m.forward_features(batch), {}
        out: dict[str, Any] = {}
        tokens = None
        for n in dict.fromkeys(wanted):
            idx = self._indices[n]
            t = final if idx is None else by_index[idx]
            if t.ndim == 3:  # a ViT's final sequence: kept for pooling; the core makes the grid
                tokens = t
            out[n] = t  # NHWC maps (Swin, ...) as they come: the core makes them NCHW
        if tokens is None and final.ndim == 3:
            tokens = final
        pre = {n: prefixes[i] for n in out if (i := self._indices[n]) is not None and i in prefixes}
        out.update(captured)
        # timm's pre-logits features: its own pooling plus any head norm (ConvNeXt, ...)
        pooled = m.forward_head(final, pre_logits=True) if self._own_pool else None
        return RawOutput(stages=out, tokens=tokens, num_prefix_tokens=prefix, prefix=pre,
                         pooled=pooled)


    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_timm.trunk import timm_trunk

        return timm_trunk(self, stages, output_stride)

    def pool_head(self, stage: str) -> torch.nn.Module | None:
        from hub_timm.trunk import timm_pool_head

        if not self._own_pool or stage != list(self.stage_specs)[-1] or stage not in self._indices:
            return None  # pooled by the core, or a stage before timm's pre-logits
        norm_pre = getattr(self.module, "norm_pre", None)
        if self._indices[stage] is not None and norm_pre is not None and any(
                True for _ in norm_pre.parameters()):
            return None  # the trunk's last map is before the final features' norm
        return timm_pool_head(self)


def _keeper(local: threading.local, name: str, index: int | None) -> Any:
    """A forward hook storing the module's output (element ``index`` of it) as stage ``name``
    in the calling thread's capture dict, when that thread asked for the stage."""
    def keep(_module: Any, _inputs: Any, out: Any) -> None:
        captured = getattr(local, "captured", None)
        if captured is not None and name in captured:
            captured[name] = out if index is None else out[index]
    return keep


@functools.lru_cache(maxsize=64)
def _param_names(func: Any) -> frozenset[str]:
    return frozenset(inspect.signature(func).parameters)


def _params(method: Any) -> frozenset[str]:
    """Parameter names of a bound method (cached per function)."""
    return _param_names(getattr(method, "__func__", method))


class TimmProvider(Provider):
    """Builds backbones with ``timm.create_model`` (no pretrained download: hub supplies weights)."""

    name = "timm"
    extra = "timm"

    def adapter_rules(self) -> TargetRules:
        """timm: ``Attention`` modules (ViT's fused ``qkv`` and ``proj``; Swin's ``WindowAttention``) and
        ``Mlp``/``GluMlp``/``SwiGLU`` blocks (``fc1``, ``fc2``)."""
        return TargetRules(attention_classes=r"Attention", attention_names=("attn",),
                           mlp_classes=r"(Mlp|SwiGLU)", mlp_names=("mlp",))

    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> TimmBackbone:
        timm = require("timm", extra="timm", purpose=f"the {spec.name} backbone")
        if not timm.is_model(spec.architecture):
            raise ManifestError(f"{spec.name}: timm {timm.__version__} has no architecture "
                                f"{spec.architecture!r} (the manifest's architecture). Fix the "
                                "manifest's name (timm.list_models() lists them), or upgrade timm "
                                "if it is newer.", model=spec.name, field="architecture")

        head: set[str] = set()

        def factory() -> torch.nn.Module:
            # headless before the weights are assigned, so weights with or without the
            # classifier fit (a fine-tuned backbone is saved without it: hub.train.save)
            model: torch.nn.Module = timm.create_model(spec.architecture, pretrained=False)
            keys = set(model.state_dict())
            timm_model: Any = model  # reset_classifier: a method of every timm architecture
            timm_model.reset_classifier(0)
            head.update(keys - set(model.state_dict()))
            return model

        def drop_head(state: dict[str, Any], _model_keys: set[str]) -> dict[str, Any]:
            return {k: v for k, v in state.items() if k not in head}

        module = build_module(factory, weights.weights if weights else None, device=device,
                              dtype=dtype, what=f"timm {spec.architecture}", key_map=drop_head)
        feature_info: Any = module.feature_info  # timm's FeatureInfo: one dict per stage
        info = [f["module"] for f in feature_info]
        indices: dict[str, int | None] = {}
        hooks: dict[str, tuple[str, int | None]] = {}
        specs = []
        for st in spec.outputs.stages:
            if st.module == FINAL:
                indices[st.name] = None
            elif st.module in info:
                indices[st.name] = info.index(st.module)
            else:
                hooks[st.name] = _hook_target(spec, st.name, st.module, module, info)
            specs.append(StageSpec(st.name, st.channels, st.stride, st.layout))
        if not specs:
            raise ManifestError(f"{spec.name}: a timm backbone needs outputs.stages.",
                                model=spec.name, field="outputs.stages")
        if specs[-1].name in hooks:
            raise ManifestError(f"{spec.name}: the last stage {specs[-1].name!r} must be a "
                                f"feature_info module or {FINAL!r}, not a hooked submodule.",
                                model=spec.name, field="outputs.stages")
        return TimmBackbone(spec, module, specs, indices, hooks, weights=weights, device=device,
                            dtype=dtype)

    def norm_layers(self) -> dict[type, NormLayer]:
        """timm's ``BatchNormAct2d`` (a batch norm fused with its dropout and activation:
        EfficientNet, MobileNet, RegNet, timm's VGG-BN and DenseNet): folding and
        ``norm="frozen"`` keep its dropout and activation."""
        from timm.layers.norm_act import BatchNormAct2d

        return {BatchNormAct2d: NormLayer(after=_act_after_norm)}


def _act_after_norm(norm: Any, x: Any) -> Any:
    """What timm's ``BatchNormAct2d`` does after normalising: its dropout, then its activation."""
    return norm.act(norm.drop(x))


def _hook_target(spec: BackboneSpec, stage: str, name: str | None, module: torch.nn.Module,
                 info: list[str]) -> tuple[str, int | None]:
    """``path`` or ``path[i]`` naming a real submodule, for a stage feature_info does not name."""
    match = _HOOK.match(name or "")
    if match is not None:
        try:
            module.get_submodule(match["path"])
        except AttributeError:
            match = None
    if match is None:
        raise ManifestError(f"{spec.name}: stage {stage!r} names module {name!r}, which is not in "
                            f"timm's feature_info {info}, nor {FINAL!r}, nor a submodule path "
                            "(optionally with [i]) of the model.", model=spec.name,
                            field="outputs.stages")
    index = match["index"]
    return match["path"], int(index) if index is not None else None
