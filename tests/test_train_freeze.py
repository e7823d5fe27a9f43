"""hub/train/freeze.py: the norm modes of ``as_module`` against ``extract()``.

One entry per kind of batch norm is built by its provider with random weights (batch-norm
statistics made non-trivial), at 64 px. For each norm mode (frozen / eval / train) every stage of
``as_module(norm=...)`` in eval mode equals ``extract(x, stages="all")``'s maps to 1e-5 relative.
``norm="frozen"`` reads the provider's table of library norms (``Provider.norm_layers``, the table
folding reads): timm's ``BatchNormAct2d`` keeps its activation (EfficientNet, MobileNet, RegNetY
differed by up to 2e8 before), and the timm DenseNets' named ``Sequential`` children are replaced
by name (they crashed). The same three modes over the whole catalogue are the conformance matrix's
``as_module[norm=...]`` cells (hub/testing, tests/test_conformance.py); this file swept every
image entry itself before the matrix existed (140 tests, 2 min 4 s of CPU on the 2-core machine).
"""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from hub.errors import InputError
from hub.train.freeze import FrozenNorm, frozen_batchnorm
from tests.zoo_support import randomize_norm_stats

CATALOG = {e.name: e.spec for e in hub.get_catalog()}
NORMS = ("frozen", "eval", "train")
#: one entry per kind of batch norm: timm's BatchNormAct2d (EfficientNet, MobileNet), timm
#: DenseNet's named Sequential children, torchvision's plain BatchNorm2d, and the entry without a
#: trunk
ENTRIES = ("densenet121", "efficientnet_b0", "mobilenet_v3_small", "resnet50_tv", "example_tinynet")
#: entries whose provider builds no trainable module (``as_module`` raises InputError)
NO_TRUNK = {"example_tinynet"}
_BUILT: dict[str, tuple[Any, torch.Tensor, dict[str, torch.Tensor]]] = {}

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # batch-1 forwards on a shared machine


def small(spec: Any) -> Any:
    """The entry at 64 px when the network takes any size (CNNs); token models keep their grid."""
    pp = spec.preprocessing.image
    if spec.outputs.pool == "cls" or "swin" in spec.architecture:
        return spec
    image = pp.model_copy(update={"size": 64, "crop_pct": 1.0})
    return spec.model_copy(update={"preprocessing": spec.preprocessing.model_copy(update={"image": image})})


def built(name: str) -> tuple[Any, torch.Tensor, dict[str, torch.Tensor]]:
    """The backbone, one image at its input size, and extract()'s maps of every stage (the last
    entry only: the cells of one entry run one after the other)."""
    if name not in _BUILT:
        _BUILT.clear()
        spec = small(CATALOG[name])
        torch.manual_seed(0)
        provider = hub.get_registry().provider(spec.provider)
        bb = provider.build(spec, None, device=torch.device("cpu"), dtype=None)
        bb.configure(bb.plan, provider=provider)  # the provider comes with the build, as hub.load gives it
        randomize_norm_stats(bb.module)
        size = spec.preprocessing.image.size
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        _BUILT[name] = bb, x, bb.extract(x, stages="all").stages
    return _BUILT[name]


# make test-fast keeps norm="frozen" (the swap); "eval" and "train" equal extract() in eval mode by
# construction
@pytest.mark.parametrize(("name", "norm"), [
    pytest.param(n, norm, id=f"{n}-{norm}", marks=[] if norm == "frozen" else [pytest.mark.slow])
    for n in ENTRIES for norm in NORMS])
def test_every_norm_mode_equals_extract_on_every_stage(name: str, norm: str) -> None:
    bb, x, ref = built(name)
    if name in NO_TRUNK:
        with pytest.raises(InputError, match="cannot build a trainable module"):
            bb.as_module(norm=norm)
        return
    net = bb.as_module(norm=norm).eval()
    with torch.no_grad():
        out = net(net_input(bb, x))
    assert list(out) == list(ref)
    for stage, want in ref.items():
        got = out[stage]
        assert got.shape == want.shape, (stage, got.shape, want.shape)
        err = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
        assert err <= 1e-5, f"{name} norm={norm} {stage}: relative error {err:.2e}"
    if norm == "frozen":  # nothing of a batch norm trains, and none is left in training mode
        net.train()
        for sub_name, sub in net.named_modules():
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                assert not sub.training and not any(p.requires_grad for p in sub.parameters()), sub_name


def net_input(bb: Any, x: torch.Tensor) -> torch.Tensor:
    pp = bb.spec.preprocessing.image
    return (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)


def test_frozen_timm_norm_keeps_its_activation_and_trains_nothing() -> None:
    """EfficientNet-B0's BatchNormAct2d become FrozenNorm with the same SiLU; a training step
    changes none of their numbers, and the dropout and activation are the norm's own modules."""
    from timm.layers.norm_act import BatchNormAct2d

    bb, x, _ = built("efficientnet_b0")
    acts = {n: type(m.act) for n, m in bb.module.named_modules() if isinstance(m, BatchNormAct2d)}
    net = bb.as_module(norm="frozen")
    frozen = {n.removeprefix("body.model."): m for n, m in net.named_modules() if isinstance(m, FrozenNorm)}
    assert frozen.keys() == acts.keys() and len(frozen) == 49
    assert {n: type(m.act) for n, m in frozen.items()} == acts
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    sum(t.pow(2).mean() for t in net.train()(net_input(bb, x.repeat(2, 1, 1, 1))).values()).backward()
    opt.step()
    after = net.state_dict()
    norm_keys = [k for k in before if k.removeprefix("body.model.").rpartition(".")[0] in frozen]
    assert norm_keys and all(torch.equal(before[k], after[k]) for k in norm_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in norm_keys)
    for m in frozen.values():  # the declared after is a module-level function
        pickle.loads(pickle.dumps(m))


def test_a_frozen_timm_net_saves_and_loads_back(tmp_path: Path) -> None:
    bb, x, ref = built("mobilenet_v3_small")
    net = bb.as_module(norm="frozen")
    saved = net.save(tmp_path / "mnv3_frozen", "mnv3_frozen")
    back = hub.load(saved, device="cpu", dtype="float32")
    got = back.extract(x, stages="all").stages
    assert all(torch.allclose(got[s], ref[s], rtol=1e-5, atol=1e-6) for s in ref)


class Named(torch.nn.Module):
    """A Sequential with named children (timm's DenseNet stem: conv0, norm0, pool0), a ModuleList,
    a library subclass nobody declared, and a batch norm without running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(OrderedDict(
            conv0=torch.nn.Conv2d(3, 4, 3), norm0=torch.nn.BatchNorm2d(4), act0=torch.nn.ReLU()))
        self.blocks = torch.nn.ModuleList([torch.nn.BatchNorm2d(4), Undeclared(4)])
        self.stats_free = torch.nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        for block in self.blocks:
            y = block(y)
        return self.stats_free(y)


class Undeclared(torch.nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(x))


def _named_in_eval() -> tuple[Named, torch.Tensor, torch.Tensor]:
    """The test network with non-trivial norm statistics, an input and its output before freezing."""
    net = Named()
    randomize_norm_stats(net)
    net.eval()
    x = torch.rand(2, 3, 8, 8)
    return net, x, net(x)


def test_frozen_batchnorm_replaces_by_name_and_keeps_what_it_cannot_freeze() -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    net, x, ref = _named_in_eval()
    kept = frozen_batchnorm(net)
    assert kept == ["blocks.1", "stats_free"]
    assert isinstance(net.features.norm0, FrozenBatchNorm2d) and isinstance(net.blocks[0], FrozenBatchNorm2d)
    assert list(net.features._modules) == ["conv0", "norm0", "act0"]
    assert type(net.blocks[1]) is Undeclared
    torch.testing.assert_close(net(x), ref)


def test_a_declared_subclass_becomes_a_frozen_norm_running_its_after() -> None:
    net, x, ref = _named_in_eval()
    kept = frozen_batchnorm(net, {Undeclared: hub.sdk.NormLayer(after=_tanh)})
    assert kept == ["stats_free"] and isinstance(net.blocks[1], FrozenNorm)
    torch.testing.assert_close(net(x), ref)
    copy.deepcopy(net)


def _tanh(_norm: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


def test_fold_and_freeze_read_the_same_provider_table() -> None:
    """One declaration per library norm: the timm provider's table is what folding gets from
    hub.load and what norm="frozen" gets from as_module."""
    from timm.layers.norm_act import BatchNormAct2d

    table = hub.get_registry().provider("timm").norm_layers()
    assert list(table) == [BatchNormAct2d] and isinstance(table[BatchNormAct2d], hub.sdk.NormLayer)
    assert hub.get_registry().provider("torchvision").norm_layers() == {}


def test_a_provider_that_declares_nothing_keeps_its_library_norms_frozen_in_eval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An undeclared batch-norm subclass is kept as it is under norm="frozen": the same function
    in eval, in eval mode through .train(), its parameters frozen (the probe still maps them)."""
    from timm.layers.norm_act import BatchNormAct2d

    bb, x, ref = built("mobilenet_v3_small")
    monkeypatch.setattr(type(hub.get_registry().provider("timm")), "norm_layers", lambda self: {})
    net = bb.as_module(norm="frozen").train()
    kept = [m for m in net.modules() if isinstance(m, BatchNormAct2d)]
    assert kept and not any(isinstance(m, FrozenNorm) for m in net.modules())
    assert not any(m.training or any(p.requires_grad for p in m.parameters()) for m in kept)
    assert any(p.requires_grad for p in net.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    sum(t.pow(2).mean() for t in net(net_input(bb, x.repeat(2, 1, 1, 1))).values()).backward()
    opt.step()
    after = net.state_dict()
    norm_keys = [f"{n}.{k}" for n, m in net.named_modules() if isinstance(m, BatchNormAct2d)
                 for k in m.state_dict()]
    assert norm_keys and all(torch.equal(before[k], after[k]) for k in norm_keys)
    fresh = bb.as_module(norm="frozen").eval()
    with torch.no_grad():
        out = fresh(net_input(bb, x))
    assert all(torch.equal(out[s], ref[s]) for s in ref)


@pytest.mark.slow
def test_mobileclip_image_tower_in_every_norm_mode_equals_extract() -> None:
    """The one image tower of the image-text entries with batch norms (timm's FastViT inside
    open_clip, BatchNormAct2d included: the open_clip provider declares it too); the others are
    ViTs with layer norms only, where the modes change nothing."""
    bb = hub.load("mobileclip_s2", pretrained=False, device="cpu", dtype="float32")
    randomize_norm_stats(bb.module)
    size = bb.spec.preprocessing.image.size
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    ref = bb.extract(x, modality="image", stages="all").stages
    for norm in NORMS:
        net = bb.as_module(modality="image", norm=norm).eval()
        with torch.no_grad():
            out = net(net_input(bb, x))
        for stage, want in ref.items():
            err = float((out[stage] - want).abs().max() / want.abs().max())
            assert err <= 1e-5, (norm, stage, err)
        if norm == "frozen":
            assert any(isinstance(m, FrozenNorm) for m in net.modules())


@pytest.mark.slow
def test_real_efficientnet_lite0_frozen_equals_extract() -> None:
    """The issue's figure: on the real weights the last stage differed by a relative 4.6e14."""
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ref = bb.extract(x, stages="all").stages
    net = bb.as_module(norm="frozen").eval()
    with torch.no_grad():
        out = net(net_input(bb, x))
    for stage, want in ref.items():
        err = float((out[stage] - want).abs().max() / want.abs().max())
        assert err <= 1e-5, (stage, err)
