"""hub.train.depth: layer-decay depth counted in repeated blocks (BEiT / MAE / timm style)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hub.train.depth import layer_depths
from tests.test_train_text import text_backbone
from tests.test_train_trunk import image_backbone


def _block_depths(depth: dict[str, int], pattern: str) -> dict[tuple[int, ...], int]:
    out: dict[tuple[int, ...], int] = {}
    for name, d in depth.items():
        m = re.match(pattern, name)
        if m:
            key = tuple(int(g) for g in m.groups())
            assert out.setdefault(key, d) == d, f"{name}: one block, one depth"
    return out


def test_resnet_one_layer_per_bottleneck_stem_first() -> None:
    net = image_backbone("resnet50").as_module()
    d = net._depth
    blocks = _block_depths(d, r"body\.model\.layer(\d)\.(\d+)\.")
    assert sorted(blocks.values()) == list(range(1, 17))  # 3 + 4 + 6 + 3 bottlenecks
    assert [blocks[k] for k in sorted(blocks)] == list(range(1, 17))  # in execution order
    assert d["body.model.conv1.weight"] == 0 and d["body.model.bn1.weight"] == 0
    # the downsample projection sits inside the first bottleneck of its stage
    assert d["body.model.layer3.0.downsample.0.weight"] == blocks[(3, 0)]
    assert net._num_layers == 16  # nothing after the last bottleneck: it trains at lr


def test_efficientnet_single_block_stages_count_as_blocks() -> None:
    net = image_backbone("efficientnet_b0").as_module()
    blocks = _block_depths(net._depth, r"body\.model\.blocks\.(\d+)\.(\d+)\.")
    assert [blocks[k] for k in sorted(blocks)] == list(range(1, 17))  # 1+2+2+3+3+4+1 blocks
    assert net._depth["body.model.conv_stem.weight"] == 0
    assert net._depth["body.model.conv_head.weight"] == net._num_layers == 17


def test_convnext_downsample_goes_with_its_stage() -> None:
    net = image_backbone("convnext_tiny").as_module()
    d = net._depth
    blocks = _block_depths(d, r"body\.model\.stages\.(\d)\.blocks\.(\d+)\.")
    assert [blocks[k] for k in sorted(blocks)] == list(range(1, 19))  # 3 + 3 + 9 + 3
    assert d["body.model.stages.1.downsample.1.weight"] == blocks[(1, 0)]
    assert d["body.model.stem.0.weight"] == 0


def test_layer_decay_lr_grows_block_by_block() -> None:
    net = image_backbone("resnet50").as_module(freeze=None)
    groups = net.param_groups(lr=1.0, layer_decay=0.5)
    lr = {n: g["lr"] for g in groups for n in g["names"]}
    assert lr["body.model.layer4.2.conv3.weight"] == 1.0  # the last block
    assert lr["body.model.layer4.1.conv3.weight"] == 0.5
    assert lr["body.model.conv1.weight"] == 0.5 ** 16


def test_text_layers_are_blocks(tmp_path: Path) -> None:
    net = text_backbone("bert_base", tmp_path).as_module()
    d = net._depth
    layers = _block_depths(d, r"body\..*encoder\.layer\.(\d+)\.")
    assert layers == {(0,): 1, (1,): 2}
    emb = [n for n in d if "embeddings" in n]
    assert emb and all(d[n] == 0 for n in emb)


def test_no_repeated_blocks_returns_nothing() -> None:
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 8, 3))
    stage_of = {f"body.{n}": 0 for n, _ in body.named_parameters()}
    assert layer_depths(body, stage_of, "body.") == ({}, 0)


@pytest.mark.slow
def test_vit_blocks_depth_as_beit() -> None:
    net = image_backbone("vit_s16").as_module()
    d = net._depth
    blocks = _block_depths(d, r"body\.model\.blocks\.(\d+)\.")
    assert blocks == {(i,): i + 1 for i in range(12)}
    for name in ("pos_embed", "cls_token", "patch_embed.proj.weight"):
        assert d[f"body.model.{name}"] == 0
    assert d["body.model.norm.weight"] == net._num_layers == 13
