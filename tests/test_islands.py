"""hub.islands: float32 islands inside a bfloat16 network, found by a sizing forward, with
casts at their edges; exact float32 weights in the islands."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import hub
from hub.errors import InputError
from hub.islands import apply_islands, depthwise_modules, early_modules, keep_islands


class Block(nn.Module):
    """An inverted residual: pointwise, depthwise, pointwise, with a skip when shapes allow."""

    def __init__(self, c: int, out: int, stride: int) -> None:
        super().__init__()
        self.pw = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, stride, 1, groups=2 * c)
        self.bn = nn.BatchNorm2d(2 * c)
        self.pwl = nn.Conv2d(2 * c, out, 1)
        self.skip = stride == 1 and c == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(torch.relu(self.bn(self.dw(self.pw(x)))))
        return x + y if self.skip else y


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)  # 1/2
        self.b1 = Block(8, 8, 1)  # 1/2, residual
        self.b2 = Block(8, 16, 2)  # 1/4
        self.b3 = Block(16, 32, 2)  # 1/8
        self.grouped = nn.Conv2d(32, 32, 3, 1, 1, groups=4)  # grouped, not depthwise
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.b3(self.b2(self.b1(self.stem(x)))))
        return self.head(x.mean((2, 3)))


def net() -> Net:
    torch.manual_seed(0)
    m = Net().eval()
    for bn in (m.b1.bn, m.b2.bn, m.b3.bn):  # non-trivial statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m


def test_early_modules_are_those_before_the_maps_get_coarser_than_the_stride() -> None:
    m = net()
    early = early_modules(m, m, 32)
    assert early == ["stem", "b1.pw", "b1.dw", "b1.bn", "b1.pwl", "b2.pw", "b2.dw", "b2.bn",
                     "b2.pwl", "b3.pw"]  # b3.dw is the first at 1/8
    assert early_modules(m, m, 32, stride=2) == ["stem", "b1.pw", "b1.dw", "b1.bn", "b1.pwl",
                                                 "b2.pw"]
    assert not any(h for mod in m.modules() for h in (mod._forward_hooks,))  # the sizing hooks gone


def test_depthwise_modules_skip_grouped_convolutions() -> None:
    assert depthwise_modules(net()) == ["b1.dw", "b2.dw", "b3.dw"]


def test_islands_keep_exact_float32_weights_and_compute_exactly_as_float32() -> None:
    ref = net()
    x = torch.rand(4, 3, 32, 32)
    island = net()
    names = early_modules(island, island, 32)
    hooks = apply_islands(island, names, torch.bfloat16)
    for name, p in island.named_parameters():
        inside = any(name.startswith(n + ".") for n in names)
        assert p.dtype == (torch.float32 if inside else torch.bfloat16), name
        if inside:  # never rounded through bf16
            assert torch.equal(p, ref.get_parameter(name)), name
    assert island.b1.bn.running_var.dtype == torch.float32
    seen: dict[str, torch.Tensor] = {}
    for m in (ref, island):
        m.b2.register_forward_hook(lambda mod, a, out, m=m: seen.__setitem__(
            "ref" if m is ref else "island", out))
    with torch.inference_mode():
        want = ref(x)
        got = island(x)  # float32 in: the stem's island takes it as it is
    # everything up to b2 ran in float32 on exact weights: the same numbers as float32
    assert seen["island"].dtype == torch.float32 and torch.equal(seen["island"], seen["ref"])
    assert got.dtype == torch.bfloat16  # the rest ran in bf16 (cast at the island's edge)
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
    for h in hooks:
        h.remove()
    # without the edge casts, the dtypes do not meet
    with pytest.raises(RuntimeError), torch.inference_mode():
        island(x)


def test_a_name_that_is_no_module_is_refused() -> None:
    with pytest.raises(InputError, match="'nope' is not a module"):
        apply_islands(net(), ["nope"], torch.bfloat16)


def test_keep_islands_on_a_backbone_takes_float32_inputs() -> None:
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    ref = bb.extract(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    names = keep_islands(bb, "early", torch.bfloat16)
    assert names[0] == "conv_stem" and names[-1] == "blocks.2.0.bn1"  # stem, blocks 0 and 1
    assert bb.module.conv_stem.weight.dtype == torch.float32
    assert bb.module.blocks[3][0].conv_dw.weight.dtype == torch.bfloat16
    bb.configure(dataclasses.replace(bb.plan, weights="bfloat16", compute="bfloat16",
                                     features="bfloat16", kept=names, channels_last=True))
    assert bb.islands == names and bb.weight_dtype == torch.bfloat16
    got = bb.extract(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    assert got.precision == "bfloat16" and got.pooled.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(got.pooled.float(), ref.pooled, dim=-1)
    assert cos.min().item() > 0.99


def test_keep_islands_refuses_unknown_modes_and_text_backbones() -> None:
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    with pytest.raises(InputError, match="choose one of early, depthwise"):
        keep_islands(bb, "late", torch.bfloat16)
    text = hub.load("minilm_l6", device="cpu", dtype="float32")
    with pytest.raises(InputError, match="apply to image backbones"):
        keep_islands(text, "early", torch.bfloat16)


def test_a_network_with_islands_cast_back_to_float32_runs_in_float32() -> None:
    """The edge casts follow the weights' dtype at each call: a float32 copy (what training
    makes) casts nothing, where hooks fixed at bf16 fed bf16 inputs to float32 weights."""
    island = net()
    apply_islands(island, early_modules(island, island, 32), torch.bfloat16)
    island.float()
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        got = island(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, net()(x), atol=0.05, rtol=0.05)  # bf16-rounded weights


def test_as_module_of_a_backbone_with_islands_trains_from_the_exact_float32_weights() -> None:
    """issue 20: hub.load(..., dtype="bfloat16", islands="early").as_module() then a forward
    raised "Input type (CPUBFloat16Type) and weight type (torch.FloatTensor) should be the
    same": the islands' casting hooks travelled into the float32 trunk. It is now rebuilt from
    the weight files, as for "auto" and folded backbones: the float32 backbone's module."""
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16", islands="early")
    assert bb.islands and bb.plan.cast_by_hub
    net = bb.as_module().eval()
    ref = hub.load("efficientnet_lite0", device="cpu", dtype="float32").as_module().eval()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = net(x), ref(x)
    assert list(a) == list(b)
    for k in b:
        assert torch.equal(a[k], b[k]), k
    net.train()
    sum(v.float().mean() for v in net(x).values()).backward()  # type: ignore[union-attr]
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_as_module_with_islands_and_random_weights_runs_in_float32() -> None:
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16", islands="early",
                  pretrained=False)
    assert bb.islands[0] == "conv_stem" and bb.weight_dtype == torch.bfloat16
    net = bb.as_module(stages=[-1]).eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = next(iter(net(x).values()))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert bb.module.conv_stem.weight.dtype == torch.float32  # the backbone is untouched
    assert bb.module.blocks[3][0].conv_dw.weight.dtype == torch.bfloat16
