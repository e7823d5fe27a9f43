"""Batch norms folded into their convolutions (hub/fold.py) before a cast to bf16.

Folding must leave every stage a provider exposes as it was (float32, to rounding), keep the
hooks and fx extractors providers attach to a batch norm working, refuse what it cannot prove
safe (a convolution read by more than its norm, a convolution whose own output is a stage, a
network fx cannot trace), and happen only where hub.load casts pretrained weights: float32 keeps
the anchor's exact modules, and training starts from a rebuild that has its batch norms.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hub
from hub.fold import FoldedConv, FoldedNorm, fold_batchnorms, foldable_pairs
from hub.train.save import save_finetuned


def randomise_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Batch-norm statistics and affines far from identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(n, generator=g))


def plain_norms(module: torch.nn.Module) -> list[str]:
    """Batch norms, a library's subclasses included, not yet folded."""
    return [n for n, m in module.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d) and not isinstance(m, FoldedNorm)]


@pytest.mark.parametrize("name", ["resnet50", "resnet50_tv", "densenet121_tv", "mobilenet_v3_small_tv",
                                  "mobilenet_v3_small"])
def test_folding_keeps_every_stage(name: str) -> None:
    """densenet121_tv's stem stage is the output of a batch norm (features.norm0) that
    torchvision's fx extractor calls: folded in place, the extractor still reads it. timm's
    mobilenet_v3_small has BatchNormAct2d (norm + hard-swish), folded through the timm
    provider's norm_layers."""
    bb = hub.load(name, pretrained=False, device="cpu", dtype="float32")
    randomise_norms(bb.module)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    stages = list(bb.stage_specs)
    ref = bb.extract(x, stages=stages)
    norms = {n: bb.module.get_submodule(n) for n in plain_norms(bb.module)}
    state = {k: v.clone() for k, v in bb.module.state_dict().items()}
    keep = {st.module for st in bb.spec.outputs.stages if st.module}
    table = hub.get_registry().provider(bb.spec.provider).norm_layers()
    done = fold_batchnorms(bb.module, keep=keep, norms=table)
    got = bb.extract(x, stages=stages)
    assert done and set(done) <= set(norms)
    for n in done:  # the same objects, their classes swapped
        m = bb.module.get_submodule(n)
        assert m is norms[n] and isinstance(m, FoldedNorm) and isinstance(m, type(norms[n]))
    after = bb.module.state_dict()  # the architecture's keys and values, folded copies left out
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    for s in stages:
        scale = ref.stages[s].abs().max()
        assert (got.stages[s] - ref.stages[s]).abs().max() <= 2e-5 * scale, s
    # folding reassociates float32 sums: compare to the pooled features' scale, as the stages are
    assert (got.pooled - ref.pooled).abs().max() <= 2e-5 * ref.pooled.abs().max()
    if name.startswith("resnet") or name == "mobilenet_v3_small":  # all follow a convolution
        assert len(done) == len(norms)


def test_a_convolution_read_by_more_than_its_norm_is_not_folded() -> None:
    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)
            self.conv2, self.bn2 = torch.nn.Conv2d(8, 8, 1), torch.nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            z = self.bn(y) + y  # the raw convolution output is read again
            return self.bn2(self.conv2(z))

    net = Branchy().eval()
    randomise_norms(net)
    x = torch.rand(2, 3, 16, 16)
    ref = net(x)
    assert foldable_pairs(net) == [("conv2", "bn2")]
    assert fold_batchnorms(net) == ["bn2"]
    assert type(net.bn) is torch.nn.BatchNorm2d and isinstance(net.conv2, FoldedConv)
    assert torch.allclose(net(x), ref, atol=1e-5)


def test_a_library_norm_subclass_folds_only_when_its_provider_says_what_it_does() -> None:
    bb = hub.load("mobilenet_v3_small", pretrained=False, device="cpu", dtype="float32")
    assert foldable_pairs(bb.module) == []  # BatchNormAct2d's forward also activates
    table = hub.get_registry().provider("timm").norm_layers()
    assert len(foldable_pairs(bb.module, norms=table)) == len(plain_norms(bb.module))


def test_a_convolution_that_is_a_stage_output_is_not_folded() -> None:
    bb = hub.load("resnet50", pretrained=False, device="cpu", dtype="float32")
    pairs = dict(foldable_pairs(bb.module, keep={"conv1", "layer1.0.conv2"}))
    assert "conv1" not in pairs and "layer1.0.conv2" not in pairs and "layer1.0.conv1" in pairs


def test_a_network_fx_cannot_trace_is_left_as_it_is() -> None:
    class Dynamic(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.conv(x))
            return y if y.sum() > 0 else -y  # data-dependent: fx cannot trace it

    net = Dynamic().eval()
    assert fold_batchnorms(net) == [] and type(net.bn) is torch.nn.BatchNorm2d


class ConvNorm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))))


def test_a_folded_network_behaves_as_the_plain_one_in_every_mode() -> None:
    """Training mode normalises with batch statistics as before; an optimiser step, a
    load_state_dict and a cast are all seen by the next eval forward (no stale fold)."""
    import copy

    torch.manual_seed(0)
    plain = ConvNorm()
    randomise_norms(plain)
    folded = copy.deepcopy(plain)
    assert fold_batchnorms(folded.eval()) == ["bn"]
    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(3))

    def same(atol: float = 1e-5) -> None:
        for mode in (True, False):
            plain.train(mode)
            folded.train(mode)
            with torch.no_grad():
                assert torch.allclose(folded(x), plain(x), atol=atol), f"training={mode}"

    same()
    import pickle

    assert torch.equal(pickle.loads(pickle.dumps(folded))(x), folded(x))  # eval mode, folded
    for net in (plain, folded):  # one identical optimiser step each, in training mode
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net(x).square().mean().backward()
        opt.step()
    same()
    state = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in plain.state_dict().items()}
    plain.load_state_dict(state)
    folded.load_state_dict(state)
    same()
    with torch.no_grad():  # an in-place edit in eval mode
        plain.bn.running_var.mul_(2)
        folded.bn.running_var.mul_(2)
    same()
    plain.to(torch.float64)
    folded.to(torch.float64)
    assert folded.conv.folded_weight.dtype == torch.float64
    x = x.double()
    same(atol=1e-6)  # the fold went through the cast: float32 precision
    folded.load_state_dict(plain.state_dict())  # refolded in float64
    same(atol=1e-10)


def test_load_folds_only_pretrained_weights_cast_down() -> None:
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = hub.load("example_tinynet", device="cpu", dtype="float32")
    assert ref.folded == () and not any(isinstance(m, FoldedNorm) for m in ref.module.modules())
    bf16 = hub.load("example_tinynet", device="cpu", dtype="bfloat16")
    assert len(bf16.folded) == 3 and "3 batch norms folded" in repr(bf16)
    assert all(p.dtype == torch.bfloat16 for p in bf16.module.parameters())
    cos = torch.nn.functional.cosine_similarity(bf16.extract(x).pooled.float(), ref.extract(x).pooled)
    assert cos.min() > 0.999
    random = hub.load("example_tinynet", pretrained=False, device="cpu", dtype="bfloat16")
    assert random.folded == ()


def test_a_folded_backbone_saves_the_architectures_weights(tmp_path: Path) -> None:
    """bb.module.state_dict() of a default-loaded (bf16, folded) backbone fits the architecture:
    saving it and loading the directory works (it did not while norms were dropped)."""
    bf16 = hub.load("example_tinynet", device="cpu", dtype="bfloat16")
    assert bf16.folded
    saved = save_finetuned(bf16, bf16.module.state_dict(), tmp_path / "tiny", "tiny_saved")
    again = hub.load(saved, device="cpu", dtype="float32")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    cos = torch.nn.functional.cosine_similarity(again.extract(x).pooled, bf16.extract(x).pooled.float())
    assert cos.min() > 0.999


def test_training_a_folded_backbone_starts_from_its_batch_norms(tmp_path: Path) -> None:
    parent = hub.load("mobilenet_v3_small_tv", pretrained=False, device="cpu", dtype="float32")
    randomise_norms(parent.module)
    saved = save_finetuned(parent, parent.module.state_dict(), tmp_path / "mnv3", "mnv3_norms")
    bf16 = hub.load(saved, device="cpu", dtype="bfloat16")
    assert len(bf16.folded) == len(plain_norms(parent.module))
    net = bf16.as_module().eval()
    ref = hub.load(saved, device="cpu", dtype="float32").as_module().eval()
    assert plain_norms(net) == plain_norms(ref) and all(
        p.dtype == torch.float32 for p in net.parameters())
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = net(x), ref(x)
    for k in b:
        assert torch.equal(a[k], b[k]), k


def test_a_folded_backbone_compiles() -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ref = hub.load("example_tinynet", device="cpu", dtype="bfloat16")
    bb = hub.load("example_tinynet", device="cpu", dtype="bfloat16", compile={"backend": "eager"})
    assert bb.compiled and bb.folded == ref.folded
    assert torch.equal(bb.extract(x).pooled, ref.extract(x).pooled)
