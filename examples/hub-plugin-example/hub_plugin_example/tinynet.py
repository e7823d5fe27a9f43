"""TinyNet: a three-stage CNN, and the provider that serves it to backbone-hub."""

from __future__ import annotations

from typing import Any

from hub.sdk import BackboneSpec, ImageBackbone, Provider, RawOutput, StageSpec, WeightFiles, build_module

__all__ = ["TinyNetProvider", "make_tinynet"]

WIDTHS = (8, 16, 32)


def make_tinynet() -> Any:
    """Three conv-BN-ReLU stages, each halving the resolution."""
    import torch.nn as nn

    layers, cin = [], 3
    for w in WIDTHS:
        layers.append(nn.Sequential(nn.Conv2d(cin, w, 3, stride=2, padding=1, bias=False),
                                    nn.BatchNorm2d(w), nn.ReLU(inplace=True)))
        cin = w
    return nn.Sequential(*layers)


class TinyNetBackbone(ImageBackbone):
    def forward(self, batch: Any, stages: list[str]) -> RawOutput:
        out, x = {}, batch
        for spec, layer in zip(self.stage_specs.values(), self.module):
            x = layer(x)
            out[spec.name] = x
        return RawOutput(stages=out)


class TinyNetProvider(Provider):
    name = "example"

    def build(self, spec: BackboneSpec, weights: WeightFiles | None, *, device: Any,
              dtype: Any) -> TinyNetBackbone:
        module = build_module(make_tinynet, weights.weights if weights else None, device=device,
                              dtype=dtype, what="example tinynet")
        specs = [StageSpec(s.name, s.channels, s.stride, s.layout) for s in spec.outputs.stages]
        return TinyNetBackbone(spec, module, specs, weights=weights, device=device, dtype=dtype)
