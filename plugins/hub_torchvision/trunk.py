"""The trainable trunk of a torchvision backbone (``TorchvisionBackbone.trunk``).

``create_feature_extractor`` on a copy of the model, returning the manifest's nodes up to the last
requested one: the traced GraphModule keeps only the submodules its graph uses, so nothing after
the last stage is owned. ``output_stride`` 8/16 rebuilds a ResNet with
``replace_stride_with_dilation`` and loads the same weights.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from hub.sdk import InputError

if TYPE_CHECKING:
    from hub_torchvision.provider import TorchvisionBackbone

__all__ = ["TorchvisionBody", "torchvision_trunk"]

#: torchvision architectures whose output stride can be 8 or 16 (by dilation)
DILATABLE = ("resnet50", "resnet101", "resnet152")


class TorchvisionBody(torch.nn.Module):
    """Model inputs -> raw stage outputs (a torchvision feature extractor)."""

    def __init__(self, model: torch.nn.Module, stage_paths: dict[str, str], tokens: bool) -> None:
        super().__init__()
        self.model = model
        self.stage_paths = stage_paths
        self.num_prefix_tokens = 1 if tokens else 0
        self.trace_size = None if tokens else 64  # ViT: its own size; CNNs: any multiple of 32

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return dict(self.model(x))


def torchvision_trunk(bb: TorchvisionBackbone, stages: list[str],
                      output_stride: int | None) -> TorchvisionBody:
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    from hub_torchvision.provider import headless

    arch = bb.spec.architecture
    if output_stride is None:
        model = copy.deepcopy(bb.module)
    elif arch not in DILATABLE:
        raise InputError(f"{bb.name} (torchvision {arch}) cannot change its output stride; "
                         f"torchvision entries that can: {', '.join(DILATABLE)} (the *_tv entries). "
                         "Use output_stride=None.")
    else:
        dilation = [False, output_stride == 8, output_stride in (8, 16)]
        builder = torchvision.models.get_model_builder(arch)
        model, _ = headless(builder(weights=None, replace_stride_with_dilation=dilation))
        model.load_state_dict({k: v.detach().clone() for k, v in bb.module.state_dict().items()})
        p = next(bb.module.parameters())
        model = model.to(device=p.device, dtype=p.dtype)
    by_name = {st.name: st.module for st in bb.spec.outputs.stages}
    nodes = {by_name[n]: n for n in stages}
    extractor = create_feature_extractor(model.train(), return_nodes=nodes)
    # what no returned node needs is neither run nor owned. torchvision's ViT encoder blocks open
    # with ``torch._assert(input.dim() == 3)``: side effects to torch.fx, so each later block's
    # assert kept every block before it alive. The shapes are the trunk's own: drop the asserts.
    # The extractor keeps a train and an eval graph (it swaps them in .train()/.eval()): prune
    # both; the stage map then drops the submodules neither calls any more.
    graphs = [getattr(extractor, "train_graph", None), getattr(extractor, "eval_graph", None)]
    for graph in [g for g in graphs if g is not None] or [extractor.graph]:
        for node in list(graph.nodes):
            if node.op == "call_function" and node.target is torch._assert and not node.users:
                graph.erase_node(node)
        graph.eliminate_dead_code()
    extractor.recompile()
    tokens = bb.spec.outputs.pool == "cls"
    return TorchvisionBody(extractor, {n: path for n in stages if (path := by_name[n])}, tokens)
