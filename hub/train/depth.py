"""The depth of each parameter for layer-wise learning-rate decay: one layer per block.

Depth is counted in **repeated blocks**, as BEiT, MAE and timm's layer decay count it. The blocks
are the children of :func:`hub.train.checkpoint.repeated_containers` that hold no repeated
container themselves: ViT/Swin/ConvNeXt blocks, ResNet bottlenecks, EfficientNet inverted
residuals, transformer layers. A parameter inside the ``j``-th block (execution order) has depth
``j``; the stem (the first stage's parameters outside any block, with class tokens and position
embeddings) depth 0; parameters between blocks (a downsampling layer at the start of a stage) the
depth of that stage's first block; parameters after the last block (a final norm) ``n + 1``,
where ``n`` is the number of blocks. The deepest depth present trains at the full learning rate.
Architectures without repeated blocks (VGG) fall back to one layer per manifest stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.train.checkpoint import repeated_containers

if TYPE_CHECKING:
    import torch

__all__ = ["layer_depths"]


def _block_prefixes(body: torch.nn.Module, prefix: str) -> list[str]:
    """Name prefixes of the blocks: children of repeated containers that hold no repeated
    container themselves (an EfficientNet stage of one block is a block; a stage of several
    is a container of blocks)."""
    names = {id(m): n for n, m in body.named_modules()}
    position = {id(m): i for i, (_, m) in enumerate(body.named_modules())}
    containers = repeated_containers(body, innermost=False)
    ids = {id(c) for c in containers}
    found = []
    for container in containers:
        base = names[id(container)]
        for child_name, child in container.named_children():
            if not any(True for _ in child.parameters()) or any(id(m) in ids for m in child.modules()):
                continue
            found.append((position[id(child)],
                          f"{prefix}{base}.{child_name}." if base else f"{prefix}{child_name}."))
    return [p for _, p in sorted(found)]


def layer_depths(body: torch.nn.Module, stage_of: dict[str, int],
                 prefix: str) -> tuple[dict[str, int], int]:
    """Parameter name -> depth, and the largest depth present (it trains at ``lr``).

    :param body: the module holding the blocks; its parameters are named ``prefix + path``.
    :param stage_of: parameter name -> index of the first stage using it
        (:func:`hub.train.stagemap.map_stages`).
    :returns: ``({}, 0)`` when the body has no repeated blocks (the caller counts stages).
    """
    blocks = _block_prefixes(body, prefix)
    if not blocks:
        return {}, 0

    def block_of(name: str) -> int | None:
        for i, b in enumerate(blocks):
            if name.startswith(b):
                return i
        return None

    # execution order: by the stage that first uses the block, then definition order
    first_stage: dict[int, int] = {}
    for name, k in stage_of.items():
        i = block_of(name)
        if i is not None:
            first_stage[i] = min(k, first_stage.get(i, k))
    order = sorted(first_stage, key=lambda i: (first_stage[i], i))
    depth_of_block = {i: j + 1 for j, i in enumerate(order)}
    top = len(order) + 1
    stage_first: dict[int, int] = {}
    stage_last: dict[int, int] = {}
    for i, k in first_stage.items():
        d = depth_of_block[i]
        stage_first[k] = min(d, stage_first.get(k, d))
        stage_last[k] = max(d, stage_last.get(k, d))
    last_stage_with_blocks = max(stage_first)
    depth: dict[str, int] = {}
    for name, k in stage_of.items():
        i = block_of(name)
        if i is not None:
            depth[name] = depth_of_block[i]
        elif k == 0 or not any(s <= k for s in stage_first):
            depth[name] = 0
        elif k in stage_first:
            depth[name] = stage_first[k]
        elif k > last_stage_with_blocks:
            depth[name] = top
        else:
            depth[name] = max(stage_last[s] for s in stage_last if s < k)
    return depth, max(depth.values())
