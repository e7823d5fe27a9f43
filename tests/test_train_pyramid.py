"""hub.train.pyramid: the ViTDet simple feature pyramid and PyramidNet (nets from tests/support/stand_in_net)."""

from __future__ import annotations

import math

import pytest
import torch

from hub.errors import InputError, ModalityError
from hub.train.pyramid import PyramidNet, SimpleFeaturePyramid, level_name
from tests.support.stand_in_net import make_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize(("in_stride", "height", "width"), [
    (16, 224, 224), (16, 112, 96), (16, 100, 120), (8, 96, 64), (14, 224, 224), (14, 98, 126)])
def test_levels_have_exact_strides_and_shapes(in_stride: int, height: int, width: int) -> None:
    pyramid = SimpleFeaturePyramid(48, in_stride, out_channels=32)
    grid = torch.randn(2, 48, _ceil(height, in_stride), _ceil(width, in_stride))
    levels = pyramid(grid, (height, width))
    assert pyramid.strides == [4, 8, 16, 32]
    assert [tuple(t.shape) for t in levels] == [
        (2, 32, _ceil(height, s), _ceil(width, s)) for s in (4, 8, 16, 32)]


def test_branches_follow_vitdet() -> None:
    """Stride 16 in: two deconvolutions for stride 4, one for 8, none for 16, a max-pool for 32."""
    pyramid = SimpleFeaturePyramid(64, 16)
    kinds = [[type(m).__name__ for m in branch] for branch in pyramid.branches]
    assert kinds[0][:4] == ["ConvTranspose2d", "LayerNorm2d", "GELU", "ConvTranspose2d"]
    assert kinds[1][0] == "ConvTranspose2d" and kinds[1][1] == "Conv2dNormActivation"
    assert kinds[2] == ["Conv2dNormActivation", "Conv2dNormActivation"]
    assert kinds[3][0] == "MaxPool2d"
    assert pyramid.branches[0][0].out_channels == 32 and pyramid.branches[0][3].out_channels == 16


def test_bad_strides_are_refused() -> None:
    with pytest.raises(InputError, match="increase"):
        SimpleFeaturePyramid(64, 16, strides=(8, 4))
    with pytest.raises(InputError, match="positive"):
        SimpleFeaturePyramid(0, 16)


def test_level_names() -> None:
    assert [level_name(s) for s in (4, 8, 16, 32, 64, 12)] == ["p2", "p3", "p4", "p5", "p6", "s12"]


def test_pyramid_net_meets_the_contract() -> None:
    vit = make_net("vit")
    net = PyramidNet(vit, out_channels=32)
    assert net.stage_names == ["p2", "p3", "p4", "p5"]
    assert net.strides == [4, 8, 16, 32] and net.out_channels == [32] * 4
    assert [(s.name, s.channels, s.stride, s.layout) for s in net.stage_specs] == [
        (f"p{k}", 32, 2 ** k, "NCHW") for k in (2, 3, 4, 5)]
    assert net.modality == "image" and net.mean == vit.mean and net.std == vit.std
    out = net(torch.randn(2, 3, 100, 120))
    assert list(out) == net.stage_names
    for spec, t in zip(net.stage_specs, out.values()):  # metadata checked against real shapes
        assert tuple(t.shape) == (2, spec.channels, math.ceil(100 / spec.stride), math.ceil(120 / spec.stride))
    assert net.pool(out).shape == (2, 32)


def test_pyramid_net_trains_every_parameter() -> None:
    """The trunk and every pyramid branch get gradients (nothing unused: DDP needs no
    find_unused_parameters), and param_groups hold each trainable parameter once."""
    net = PyramidNet(make_net("vit"), out_channels=32)
    sum(t.square().mean() for t in net(torch.randn(2, 3, 64, 64)).values()).backward()
    assert all(p.grad is not None for p in net.parameters())
    groups = net.param_groups(lr=0.1, weight_decay=0.05)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(net.parameters()))
    decays = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, p in net.pyramid.named_parameters():
        assert decays[id(p)] == (0.05 if p.ndim > 1 else 0.0), name
    assert all(g["lr"] == 0.1 for g in groups)


def test_frozen_trunk_stays_out_of_the_groups() -> None:
    vit = make_net("vit")
    vit.requires_grad_(False)
    net = PyramidNet(vit, out_channels=32)
    grouped = {id(p) for g in net.param_groups(lr=0.1) for p in g["params"]}
    assert grouped == {id(p) for p in net.pyramid.parameters()}


def test_only_single_stride_image_nets() -> None:
    with pytest.raises(InputError, match="several strides"):
        PyramidNet(make_net("cnn"))
    with pytest.raises(ModalityError, match="image backbone"):
        PyramidNet(make_net("text"))
