"""The torchvision provider: ``torchvision.models`` architectures as hub backbones.

A manifest stage's ``module`` is a node name for torchvision's
``create_feature_extractor`` (``layer4``, ``features.28``, ``encoder.ln``...).
Token outputs (ViT) of shape (B, N, D) are returned as NCHW patch grids with the
class token removed; the sequence is kept for ``cls`` pooling.

The classification head is not part of a backbone: the model's last child (``fc``,
``classifier`` or ``heads`` in torchvision's image classifiers) is replaced by an
identity before the weights are loaded, and the head's keys in the weight file are
not loaded. The file may carry torchvision's head or the head of timm's Hub copy of
the same torchvision weights (``pre_logits.*``, ``head.*``); every other key must
match the trunk exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.sdk import (
    ImageBackbone,
    ManifestError,
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

__all__ = ["HEAD_PREFIXES", "TorchvisionBackbone", "TorchvisionProvider", "headless"]

#: key prefixes of classifier heads in timm's Hub copies of torchvision weights (VGG)
HEAD_PREFIXES = ("pre_logits.", "head.")


class TorchvisionBackbone(ImageBackbone):
    """An image backbone backed by a torchvision feature extractor."""

    def __init__(self, spec: BackboneSpec, module: torch.nn.Module, specs: list[StageSpec],
                 extractor: torch.nn.Module, **kw: Any) -> None:
        super().__init__(spec, module, specs, **kw)
        self.extractor = extractor.eval()

    def forward(self, batch: torch.Tensor, stages: list[str]) -> RawOutput:
        outs = self.extractor(batch)
        result: dict[str, Any] = {}
        tokens = None
        for name, t in outs.items():
            if t.ndim == 3:  # the core turns sequences into grids + prefix (class) tokens
                tokens = t
            result[name] = t
        return RawOutput(stages=result, tokens=tokens, num_prefix_tokens=1 if tokens is not None else 0)


    def trunk(self, stages: list[str], output_stride: int | None) -> torch.nn.Module:
        from hub_torchvision.trunk import torchvision_trunk

        return torchvision_trunk(self, stages, output_stride)


def headless(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """Replace the model's last child (its classifier) by an identity; return it and its name."""
    import torch

    name = list(model.named_children())[-1][0]
    setattr(model, name, torch.nn.Identity())
    return model, name


def _drop_head(head: str) -> Any:
    def key_map(state: dict[str, Any], _model_keys: set[str]) -> dict[str, Any]:
        prefixes = (head + ".", *HEAD_PREFIXES)
        return {k: v for k, v in state.items() if not k.startswith(prefixes)}
    return key_map


class TorchvisionProvider(Provider):
    """Builds ``torchvision.models.<architecture>()`` and loads hub-verified weights."""

    name = "torchvision"
    extra = "torchvision"

    def adapter_rules(self) -> TargetRules:
        """torchvision: ViT's ``self_attention`` (an ``nn.MultiheadAttention``), Swin's
        ``ShiftedWindowAttention``; ``MLPBlock``/``MLP`` blocks."""
        return TargetRules(attention_classes=r"(MultiheadAttention|ShiftedWindowAttention(V2)?)$",
                           attention_names=("self_attention", "attn"),
                           mlp_classes=r"(MLPBlock|MLP)$", mlp_names=("mlp",))

    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> TorchvisionBackbone:
        require("torchvision.models.feature_extraction", package="torchvision",
                extra="torchvision", purpose=f"the {spec.name} backbone")  # imports torch too
        import torch
        import torchvision
        from torchvision.models.feature_extraction import create_feature_extractor

        try:
            builder = torchvision.models.get_model_builder(spec.architecture)
        except ValueError as exc:
            raise ManifestError(f"{spec.name}: torchvision has no model {spec.architecture!r}.",
                                model=spec.name, field="architecture") from exc
        with torch.device("meta"):
            _, head = headless(builder(weights=None))

        def factory() -> torch.nn.Module:
            return headless(builder(weights=None))[0]

        module = build_module(factory, weights.weights if weights else None, device=device,
                              dtype=dtype, what=f"torchvision {spec.architecture} (without its {head})",
                              key_map=_drop_head(head))
        nodes = {}
        for st in spec.outputs.stages:
            if not st.module:
                raise ManifestError(f"{spec.name}: stage {st.name!r} needs a module (a node name).",
                                    model=spec.name, field="outputs.stages")
            nodes[st.module] = st.name
        try:
            extractor = create_feature_extractor(module, return_nodes=nodes)
        except ValueError as exc:
            raise ManifestError(f"{spec.name}: a stage names a node torchvision's {spec.architecture} "
                                f"does not have ({exc}).", model=spec.name,
                                field="outputs.stages") from exc
        specs = [StageSpec(s.name, s.channels, s.stride, s.layout) for s in spec.outputs.stages]
        return TorchvisionBackbone(spec, module, specs, extractor, weights=weights, device=device,
                                   dtype=dtype)
