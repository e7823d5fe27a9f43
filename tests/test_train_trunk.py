"""Backbone.as_module: the trainable trunk (hub.train) against extract(), for every zoo family.

Backbones are built by their providers with random weights (batch-norm statistics made
non-trivial), no download. Parity: eval-mode outputs of ``as_module`` equal ``extract()``'s stage
maps for the same normalised pixels (CNNs at 64x64 through the backbone's own ``forward`` and
``finish``, the steps extract() runs after preprocessing; token models at their size).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from hub.errors import InputError
from tests.zoo_support import randomize_norm_stats, zoo_specs

SPECS = {s.name: s for s in zoo_specs()}
FAST = ["resnet50", "resnet50_tv", "densenet121", "densenet121_tv", "vgg16_bn", "vgg16_tv",
        "efficientnet_b0", "efficientnetv2_s", "mobilenet_v2", "mobilenet_v3_small",
        "mobilenet_v3_small_tv", "mobilenet_v2_tv", "convnext_tiny", "regnety_032"]
SLOW = ["hrnet_w18", "vit_s16", "vit_b16_tv", "dinov2_s14", "swin_t"]
_CACHE: dict[str, Any] = {}


def image_backbone(name: str) -> Any:
    if name not in _CACHE:
        spec = SPECS[name]
        torch.manual_seed(0)
        bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"),
                                                             dtype=None)
        randomize_norm_stats(bb.module)
        _CACHE[name] = bb
    return _CACHE[name]


def pixels(bb: Any, batch: int = 2) -> torch.Tensor:
    pp = bb.spec.preprocessing.image
    token_model = bb.spec.outputs.pool == "cls" or "swin" in bb.spec.architecture
    size = pp.size if token_model else 64
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)


def reference(bb: Any, xn: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """extract()'s stage maps for already-normalised pixels (its steps after preprocessing)."""
    with torch.inference_mode():
        return bb.finish(bb.forward(xn, names), names, bb.spec.outputs.pool).stages


def check_parity_and_grads(name: str, batch: int = 2) -> None:
    bb = image_backbone(name)
    before = {k: v.clone() for k, v in bb.module.state_dict().items()}
    net = bb.as_module()
    assert isinstance(net, torch.nn.Module) and net.stage_names == list(bb.stage_specs)
    xn = pixels(bb, batch)
    ref = reference(bb, xn, list(bb.stage_specs))
    with torch.no_grad():
        out = net.eval()(xn)
    assert list(out) == net.stage_names
    for spec, (n, t) in zip(net.stage_specs, out.items()):
        torch.testing.assert_close(t, ref[n], rtol=1e-5, atol=1e-5, msg=lambda m, n=n: f"{name}.{n}: {m}")
        assert t.ndim == 4 and t.shape[1] == spec.channels, (n, t.shape, spec)
        assert xn.shape[-1] // t.shape[-1] == spec.stride, (n, t.shape, spec)
        manifest = bb.stage_specs[n]
        assert (spec.channels, spec.stride) == (manifest.channels, manifest.stride)
    assert net.out_channels == [s.channels for s in net.stage_specs]
    assert net.strides == [s.stride for s in net.stage_specs]
    # nothing owned after the last stage: every parameter gets a gradient in train mode
    net.train()
    sum(t.sum() for t in net(xn).values()).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    # the backbone's own module is untouched and still frozen
    after = bb.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in bb.module.parameters())


@pytest.mark.parametrize("name", FAST)
def test_image_trunk_equals_extract_and_owns_nothing_unused(name: str) -> None:
    check_parity_and_grads(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_token_and_hrnet_trunk_equals_extract(name: str) -> None:
    # one image: these run at their full grid (DINOv2 at 518 px, 1369 tokens), and the CNNs above
    # check the batch dimension
    check_parity_and_grads(name, batch=1)


def test_last_stage_prunes_later_layers() -> None:
    bb = image_backbone("resnet50")
    net = bb.as_module(stages=["layer2"])
    names = {n.split(".")[2] for n, _ in net.named_parameters()}
    assert "layer3" not in names and "layer4" not in names and "fc" not in names
    xn = pixels(bb)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(xn)["layer2"], reference(bb, xn, ["layer2"])["layer2"])
    tv = image_backbone("densenet121_tv").as_module(stages=["block2"])
    assert not any("denseblock3" in n or "norm5" in n for n, _ in tv.named_parameters())


@pytest.mark.slow
def test_torchvision_vit_cut_at_an_early_block_owns_only_that_far() -> None:
    """torchvision's ViT blocks assert their input's rank (torch.fx keeps such asserts, and with
    them every block before them): a trunk cut at block3 must own and run three blocks only."""
    bb = image_backbone("vit_b16_tv")
    xn = pixels(bb, batch=1)
    for stage, blocks in (("block3", 3), ("block6", 6)):
        net = bb.as_module(stages=[stage]).eval()
        with torch.no_grad():
            out = net(xn)
        torch.testing.assert_close(out[stage], reference(bb, xn, [stage])[stage], rtol=1e-5, atol=1e-5)
        layers = {n.split(".encoder_layer_")[1].split(".")[0] for n, _ in net.named_parameters()
                  if ".encoder_layer_" in n}
        assert layers == {str(i) for i in range(blocks)}, (stage, sorted(layers))
        net.train()
        sum(t.sum() for t in net(xn).values()).backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def _train_steps(net: torch.nn.Module, xn: torch.Tensor, steps: int = 3) -> None:
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        sum(t.float().pow(2).mean() for t in net(xn).values()).backward()
        opt.step()


def test_freeze_keeps_frozen_weights_and_bn_stats_bit_identical() -> None:
    bb = image_backbone("resnet50")
    net = bb.as_module(freeze="layer2", norm="train")
    net = net.to(torch.float64).train()  # freezing holds through .to() and .train()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen and all(not n.startswith(("body.model.layer3", "body.model.layer4")) for n in frozen)
    assert any(n.startswith("body.model.conv1") for n in frozen)  # the stem
    assert any(n.startswith("body.model.layer2") for n in frozen)
    state0 = {k: v.clone() for k, v in net.state_dict().items()}
    _train_steps(net, pixels(bb).double())
    state1 = net.state_dict()
    for k in state0:
        stage = k.split(".")[2]
        if stage in ("conv1", "bn1", "layer1", "layer2"):
            assert torch.equal(state0[k], state1[k]), k  # weights and running stats
    assert not torch.equal(state0["body.model.layer4.0.conv1.weight"], state1["body.model.layer4.0.conv1.weight"])
    assert not torch.equal(state0["body.model.layer4.0.bn1.running_mean"],
                           state1["body.model.layer4.0.bn1.running_mean"])
    assert all(p.grad is None for n, p in net.named_parameters() if n in frozen)
    groups = net.param_groups(lr=0.1, weight_decay=0.05)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in in_groups for n, p in net.named_parameters() if n in frozen)


def test_norm_modes() -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    bb = image_backbone("resnet50")
    xn = pixels(bb)
    net = bb.as_module(norm="frozen")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in net.modules()) == 53
    net.eval()
    with torch.no_grad():  # frozen BN gives the same maps
        torch.testing.assert_close(net(xn)["layer4"], reference(bb, xn, ["layer4"])["layer4"])
    ev = bb.as_module(norm="eval").train()
    bns = [m for m in ev.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    _train_steps(ev, xn, 1)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, bns))


def test_grad_checkpointing_same_gradients() -> None:
    bb = image_backbone("convnext_tiny")
    xn = pixels(bb)
    grads = []
    for ckpt in (False, True):
        net = bb.as_module(grad_checkpointing=ckpt).train()
        sum(t.sum() for t in net(xn).values()).backward()
        grads.append({n: p.grad for n, p in net.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-5)
    net = bb.as_module(grad_checkpointing=True)
    assert any(type(m).__name__.startswith("Checkpointed") for m in net.modules())


@pytest.mark.parametrize("name", ["resnet50", "resnet50_tv"])
def test_output_stride(name: str) -> None:
    bb = image_backbone(name)
    xn = pixels(bb)
    for os_, strides in ((16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])):
        net = bb.as_module(output_stride=os_).eval()
        assert net.strides == strides
        with torch.no_grad():
            out = net(xn)
        assert [64 // t.shape[-1] for t in out.values()] == strides
        assert net.out_channels == [t.shape[1] for t in out.values()]


def test_output_stride_refused_names_alternatives() -> None:
    with pytest.raises(InputError, match="resnet50"):
        image_backbone("densenet121_tv").as_module(output_stride=16)
    with pytest.raises(InputError, match="output_stride must be"):
        image_backbone("resnet50").as_module(output_stride=4)


def test_bad_arguments() -> None:
    bb = image_backbone("mobilenet_v3_small")
    with pytest.raises(InputError, match="no stage 'nope'"):
        bb.as_module(stages=["nope"])
    with pytest.raises(InputError, match="cannot freeze up to"):
        bb.as_module(stages=["stage2"], freeze="stage4")
    with pytest.raises(InputError, match="out of range"):
        bb.as_module(freeze=99)
    with pytest.raises(InputError, match="norm='sometimes'"):
        bb.as_module(norm="sometimes")
    stages = r"mobilenet_v3_small's stages are \['stage1', 'stage2'"
    for bad in (1.5, b"stem", True):  # a TypeError (float not iterable) or a wrong stage before
        with pytest.raises(InputError, match=rf"stages={bad!r} \({type(bad).__name__}\) is not a "
                                             rf"selection: use None .*; {stages}"):
            bb.as_module(stages=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=rf"got 1.5 \(float\); {stages}"):
        bb.as_module(stages=["stage1", 1.5])  # type: ignore[list-item]


def test_param_groups_decay_and_layer_decay() -> None:
    bb = image_backbone("resnet50")
    net = bb.as_module(freeze=1)
    groups = net.param_groups(lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    for g in groups:
        for n, p in zip(g["names"], g["params"]):
            if p.ndim <= 1 or n.endswith("bias"):
                assert g["weight_decay"] == 0.0, n
    decayed = [g for g in groups if g["weight_decay"] > 0]
    assert decayed and all(g["weight_decay"] == 0.05 for g in decayed)
    by_depth = sorted({(g["depth"], g["lr"]) for g in groups})
    lrs = [lr for _, lr in by_depth]
    assert lrs == sorted(lrs) and len(set(lrs)) > 2 and lrs[-1] == 1e-3
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[-1]["lr"] == pytest.approx(5e-4)


@pytest.mark.slow
def test_param_groups_vit_tokens_not_decayed() -> None:
    net = image_backbone("vit_s16").as_module()
    groups = net.param_groups(lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    flags = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert flags["body.model.pos_embed"] == 0 and flags["body.model.cls_token"] == 0
    assert flags["body.model.blocks.0.attn.qkv.weight"] == 0.05
    assert flags["body.model.norm.weight"] == 0
    depth = {n: g["depth"] for g in groups for n in g["names"]}
    assert depth["body.model.blocks.11.mlp.fc1.weight"] > depth["body.model.blocks.4.mlp.fc1.weight"] \
        > depth["body.model.patch_embed.proj.weight"]


def test_eval_transforms_equal_extract_preprocessing() -> None:
    from PIL import Image

    bb = image_backbone("mobilenet_v3_small")
    net = bb.as_module()
    g = torch.Generator().manual_seed(3)
    img = Image.fromarray((torch.rand(300, 410, 3, generator=g) * 255).byte().numpy())
    got = net.transforms(train=False)(img)
    ref = next(bb.batches([img], 1, None))[1][0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    size = bb.spec.preprocessing.image.size
    t = net.transforms(train=True)(img)
    assert t.shape == (3, size, size) and t.dtype == torch.float32
    assert net.mean == tuple(bb.spec.preprocessing.image.mean)


def test_parent_state_dict_and_save() -> None:
    bb = image_backbone("mobilenet_v3_small")
    net = bb.as_module(stages=["stage3"])
    _train_steps(net, pixels(bb), 1)
    state = net.parent_state_dict()
    parent = bb.module.state_dict()
    assert state.keys() == parent.keys()
    k = "blocks.1.0.conv_pw.weight"
    assert torch.equal(state[k], net.state_dict()["body.model." + k])
    assert not torch.equal(state[k], parent[k])
    last = "conv_head.weight" if "conv_head.weight" in parent else next(reversed(parent))
    assert torch.equal(state[last], parent[last])  # pruned layers keep the parent's weights


def test_trunk_does_not_keep_the_parents_weights_alive() -> None:
    """One copy of the weights while fine-tuning: the trunk keeps a skeleton of its parent, not the
    parent's tensors (only those of layers it pruned, for parent_state_dict)."""
    import gc
    import weakref

    spec = SPECS["mobilenet_v3_small"]
    bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"),
                                                         dtype=None)
    first = weakref.ref(bb.module.conv_stem.weight)
    net = bb.as_module(stages=["stage3"])
    full = bb.module.state_dict()
    del bb
    gc.collect()
    assert first() is None  # the parent's stem weight is gone: the trunk holds its own copy
    state = net.parent_state_dict()
    assert state.keys() == full.keys()
    for k, v in full.items():
        if not k.startswith(("conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2")):
            assert torch.equal(state[k], v), k  # pruned layers: still the parent's values


def test_save_defaults_its_name_and_records_the_stages(tmp_path: Path) -> None:
    import hub

    bb = image_backbone("mobilenet_v3_small")
    net = bb.as_module(stages=["stage2", "stage3"])
    _train_steps(net, pixels(bb), 1)
    net.save(tmp_path / "ft")
    back = hub.load(tmp_path / "ft", device="cpu", dtype="float32")
    assert back.name == "mobilenet_v3_small_finetuned"
    assert back.spec.parent is not None and back.spec.parent.stages == ["stage2", "stage3"]
    k = "blocks.1.0.conv_pw.weight"
    assert torch.equal(back.module.state_dict()[k], net.state_dict()["body.model." + k])


def test_cls_pool_on_vit_uses_class_token() -> None:
    pytest.importorskip("timm")
    bb = image_backbone("resnet50")
    net = bb.as_module().eval()
    xn = pixels(bb)
    with torch.no_grad():
        out = net(xn)
    torch.testing.assert_close(net.pool(out), out["layer4"].mean(dim=(2, 3)))


# ---- DDP ----------------------------------------------------------------------------------------
def _ddp_worker(rank: int, root: str) -> None:
    """One rank: a file store (no TCP store, which listens on every interface) and gloo pinned to
    the loopback interface, so nothing listens beyond 127.0.0.1; collectives time out after 60 s."""
    import datetime
    import os

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.distributed.init_process_group("gloo", init_method=Path(root, "store").as_uri(), rank=rank,
                                         world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        spec = SPECS["mobilenet_v3_small"]
        bb = hub.get_registry().provider("timm").build(spec, None, device=torch.device("cpu"), dtype=None)
        net = bb.as_module(stages=["stage2", "stage4"], freeze="stage2", norm="frozen")
        ddp = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=False)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(rank))
        for _ in range(2):  # an unused parameter would make DDP raise in the second step
            ddp.zero_grad()
            out = ddp(x)
            sum(t.sum() for t in out.values()).backward()
        grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
        frozen = [n for n, p in net.named_parameters() if not p.requires_grad and p.grad is not None]
        torch.save({"grads": grads, "frozen_with_grad": frozen, "frozen": sum(1 for p in net.parameters()
                                                                            if not p.requires_grad)},
                   Path(root, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_no_unused_parameters(tmp_path: Path) -> None:
    import time

    import torch.multiprocessing as mp

    ctx = mp.start_processes(_ddp_worker, args=(str(tmp_path),), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 240
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail("the two DDP ranks did not finish within 240 s")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["frozen"] > 0 and not r0["frozen_with_grad"] and not r1["frozen_with_grad"]
    assert r0["grads"].keys() == r1["grads"].keys() and r0["grads"]
    # different inputs per rank, so equal gradients mean DDP averaged every trainable one
    for n in r0["grads"]:
        assert r0["grads"][n] is not None, n
        torch.testing.assert_close(r0["grads"][n], r1["grads"][n], msg=lambda m, n=n: f"{n}: {m}")


def test_backbone_copy_is_independent() -> None:
    bb = image_backbone("mobilenet_v3_small")
    net = bb.as_module()
    twin = copy.deepcopy(net)
    assert all(p.requires_grad for p in twin.parameters())
    assert twin._parent is net._parent and twin._parent.spec is bb.spec  # shared, not copied
    assert all(a is not b for a, b in zip(twin.parameters(), net.parameters()))


def test_a_bf16_backbone_gives_a_float32_trainable_net(tmp_path: Path) -> None:
    """dtype="bfloat16" (or "auto" on a CPU with AMX) casts the backbone's weights; training keeps
    float32 master weights, the pooling head included, and saves float32."""
    spec = SPECS["convnext_tiny"]
    torch.manual_seed(0)
    bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"),
                                                         dtype=torch.bfloat16)
    assert next(bb.module.parameters()).dtype == torch.bfloat16
    net = bb.as_module(stages=["stage4"])
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    head = net.pooling_head()
    assert {p.dtype for p in head.parameters()} == {torch.float32} and any(True for _ in head.parameters())
    out = net(torch.randn(2, 3, 64, 64))
    assert out["stage4"].dtype == torch.float32
    assert {v.dtype for v in net.parent_state_dict().values() if v.is_floating_point()} == {torch.float32}


@pytest.mark.slow  # the child runs every test of the module, slow ones included (~3 min)
def test_graph_tools_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """tests/test_train_export.py (torch.export, torch.compile, ONNX of as_module nets) in a child
    pytest: every test there passes. The child's TMPDIR is this test's temporary folder, which
    pytest removes: inductor's kernel cache and precompiled headers would otherwise stay in
    /tmp/torchinductor_<user>, hundreds of megabytes per run."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            str(root / "tests" / "test_train_export.py")]
    env = {**os.environ, "HUB_TEST_CHILD": "export", "TMPDIR": str(tmp_path)}
    child = subprocess.run(args, env=env, capture_output=True, text=True, cwd=root)
    tail = child.stdout[-6000:] + child.stderr[-3000:]
    assert child.returncode == 0, tail
    assert "passed" in child.stdout and "failed" not in child.stdout, tail


def test_the_stage_mapping_forward_runs_at_the_bodys_trace_size() -> None:
    """The provider's body names the smallest input it takes (``trace_size``; plugins written
    before the rename say ``probe_size``); without either, the manifest's size."""
    from hub.train.assemble import _example

    bb = image_backbone("resnet50")
    body = bb.trunk(list(bb.stage_specs), None)
    x, size = _example(bb, body)
    assert (size, tuple(x.shape)) == (64, (1, 3, 64, 64))
    body.trace_size = None
    body.probe_size = 96
    assert _example(bb, body)[1] == 96
    del body.probe_size
    assert _example(bb, body)[1] == bb.spec.preprocessing.image.size == 224
