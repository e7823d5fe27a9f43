"""Backbone.as_module() through PyTorch's graph tools: torch.export, torch.compile and ONNX.

Families: a CNN (the real ``efficientnet_lite0`` weights, 64 px, batch-norm in train mode for the
training step) and a ViT (random-weight ``vit_s16`` at its fixed 224 px, built by its provider as
tests/test_train_trunk.py does; its stages carry the class token in ``out.prefix``).

Tolerances, relative to the largest magnitude of each compared map (elementwise relative error is
meaningless where a map crosses zero):
- torch.export: ``ep.module()`` runs the same aten ops as eager, on the same kernels: 1e-5.
- torch.compile: the CNN through inductor (CPU C++ kernels, what a user's ``torch.compile(net)`` runs),
  cut at its second stage: inductor's C++ compilation is the suite's single largest cost (the whole
  network, eval then train graphs, took 105 s of CPU on a 2-core EPYC, the first two stages 35 s,
  15 s of it the first compile's fixed cost), and the kernels of later stages are more of the same
  ops. The ViT through ``aot_eager`` (dynamo's capture and AOTAutograd's forward and backward graphs,
  run by eager kernels): what is ViT-specific there is the class token leaving the graph in
  ``out.prefix``, which is the capture's job, not inductor's. Fused kernels reorder float32 sums
  (about 1e-6 relative here); 1e-4 leaves room for that, while a wrong weight or a dropped op moves
  the maps by O(1). Gradients (one train-mode step): the backward sums over batch and positions in
  yet another order, through every batch-norm: all gradients together within 1e-3 (L2, relative;
  2e-4 seen on the CNN), each within 5e-3 of its own largest value (1.1e-3 seen) plus 1e-6 of the
  net's largest gradient, the floor for gradients that are exactly zero in exact arithmetic (a
  batch-norm bias followed by a convolution and another train-mode batch-norm, which cancels the
  shift) and so hold only rounding noise (1e-9 of the largest).
- ONNX Runtime: its own convolution, GEMM and fused-attention kernels: 1e-4.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from hub.train.outputs import Stages, register_pytree
from tests.zoo_support import randomize_norm_stats, zoo_specs

#: The whole module runs in a fresh interpreter (tests/test_train_trunk.py::
#: test_graph_tools_in_a_fresh_interpreter starts it with HUB_TEST_CHILD=export), as a user's training
#: script would: a whole-suite process crashed with SIGSEGV inside libpython around these tests
#: (deterministic in that process, not reproducible when the file runs alone).
pytestmark = pytest.mark.skipif(os.environ.get("HUB_TEST_CHILD") != "export",
                                reason="run in a fresh interpreter by tests/test_train_trunk.py")

_NETS: dict[str, Any] = {}


def build(family: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """``(net, normalised pixels)`` for ``"cnn"``, ``"cnn-cut"`` (its first two stages) or ``"vit"``
    (cached per module: read-only use)."""
    if family not in _NETS:
        if family.startswith("cnn"):
            bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
            net = bb.as_module(stages=["stage1", "stage2"] if family == "cnn-cut" else None)
            size = 64
        else:
            spec = next(s for s in zoo_specs() if s.name == "vit_s16")
            torch.manual_seed(0)
            bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"),
                                                                 dtype=None)
            randomize_norm_stats(bb.module)
            net, size = bb.as_module(), spec.preprocessing.image.size
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        _NETS[family] = (net, x)
    net, x = _NETS[family]
    return copy.deepcopy(net), x


def assert_maps_close(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], rel: float,
                      what: str) -> None:
    assert list(got) == list(ref), (what, list(got), list(ref))
    for n in ref:
        g, r = torch.as_tensor(got[n]), ref[n]
        assert g.shape == r.shape, (what, n, g.shape, r.shape)
        scale = float(r.abs().max())
        torch.testing.assert_close(g, r, rtol=rel, atol=rel * scale, msg=lambda m, n=n: f"{what}.{n}: {m}")


def eager(net: torch.nn.Module, x: torch.Tensor) -> Stages:
    with torch.no_grad():
        out: Stages = net.eval()(x)
    return out


# ---- the output type is a pytree node ------------------------------------------------------------
def test_stages_flatten_and_rebuild_with_prefix() -> None:
    from torch.utils import _pytree

    register_pytree()  # a Trunk does it when it is made (importing hub.train does not)
    register_pytree()  # twice: a no-op
    out = Stages(a=torch.ones(1), b=torch.zeros(2))
    out.prefix = {"b": torch.full((1, 1, 2), 3.0)}
    leaves, spec = _pytree.tree_flatten(out)
    assert len(leaves) == 3  # two stages and one prefix tensor
    back = _pytree.tree_unflatten(leaves, spec)
    assert isinstance(back, Stages) and list(back) == ["a", "b"] and list(back.prefix) == ["b"]
    assert torch.equal(back.prefix["b"], out.prefix["b"])
    paths = [_pytree.keystr(p) for p, _ in _pytree.tree_flatten_with_path(out)[0]]
    assert paths == ["['a']", "['b']", ".prefix['b']"]


def test_export_small_cnn_trunk_fast() -> None:
    """Fast guard for the pytree registration: torch.export refuses an unregistered output type."""
    spec = next(s for s in zoo_specs() if s.name == "mobilenet_v3_small")
    torch.manual_seed(0)
    bb = hub.get_registry().provider(spec.provider).build(spec, None, device=torch.device("cpu"), dtype=None)
    net = bb.as_module(stages=["stage1"]).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ep = torch.export.export(net, (x,))
    got = ep.module()(x)
    assert isinstance(got, Stages)
    assert_maps_close(got, eager(net, x), 1e-5, "export")


# ---- torch.export, then ONNX from the same program ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("family", ["cnn", "vit"])
# torch.export.save warns that weights sharing storage (CPU views) were saved from their first view
@pytest.mark.filterwarnings("ignore:No complete tensor found in the group:UserWarning")
def test_torch_export_and_onnx_equal_eager(family: str, tmp_path: Path) -> None:
    """torch.export at a dynamic batch (run, saved, loaded), then the same ExportedProgram to ONNX
    (the dynamo exporter, run in onnxruntime): one capture serves both (two separate tests took
    30 s on the 2-core machine, this one 20 s)."""
    from torch.export import Dim

    net, x = build(family)
    ref = eager(net, x)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: Dim("batch", min=1, max=64)},))
    got = ep.module()(x)
    assert isinstance(got, Stages)
    assert_maps_close(got, ref, 1e-5, f"{family} export")
    assert list(got.prefix) == list(ref.prefix)
    assert_maps_close(got.prefix, ref.prefix, 1e-5, f"{family} export prefix")
    torch.testing.assert_close(net.pool(got), net.pool(ref), rtol=1e-5, atol=1e-5)  # cls pooling on ViT
    # saved and loaded (the output's tree spec is serialised by name), at another batch size
    torch.export.save(ep, tmp_path / "net.pt2")
    loaded = torch.export.load(tmp_path / "net.pt2").module()
    x3 = torch.cat([x, x[:1].flip(-1)])
    want = eager(net, x3)
    assert_maps_close(loaded(x3), want, 1e-5, f"{family} export loaded")

    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    names = net.stage_names + [f"prefix.{n}" for n in ref.prefix]
    path = tmp_path / "net.onnx"
    torch.onnx.export(ep, (x,), path, dynamo=True, input_names=["pixels"], output_names=names)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == names
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = dict(zip(names, session.run(None, {"pixels": x3.numpy()}), strict=True))
    assert_maps_close({n: torch.from_numpy(outs[n]) for n in net.stage_names}, want, 1e-4, f"{family} ort")
    assert_maps_close({n: torch.from_numpy(outs[f"prefix.{n}"]) for n in want.prefix}, want.prefix, 1e-4,
                      f"{family} ort prefix")


# ---- torch.compile ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("family", "backend"), [("cnn-cut", "inductor"), ("vit", "aot_eager")])
def test_torch_compile_equals_eager_and_trains(family: str, backend: str) -> None:
    torch._dynamo.reset()
    net, x = build(family)
    twin = copy.deepcopy(net)
    compiled = torch.compile(twin, backend=backend)  # inductor: C++ kernels on the CPU
    with torch.no_grad():
        got = compiled.eval()(x)
    ref = eager(net, x)
    assert isinstance(got, Stages)
    assert_maps_close(got, ref, 1e-4, f"{family} compile")
    assert_maps_close(got.prefix, ref.prefix, 1e-4, f"{family} compile prefix")
    # one training step in train mode (batch-norm on batch statistics), same start weights
    grads = []
    for module in (net, compiled):
        module.train()
        out = module(x)
        sum(t.float().pow(2).mean() for t in out.values()).backward()
        grads.append({n: p.grad for n, p in module.named_parameters()})
    ref_g, got_g = grads[0], {n.removeprefix("_orig_mod."): g for n, g in grads[1].items()}
    assert ref_g.keys() == got_g.keys()
    assert all(g is not None for g in [*ref_g.values(), *got_g.values()])
    top = max(float(g.abs().max()) for g in ref_g.values())
    for n, r in ref_g.items():
        tol = 5e-3 * float(r.abs().max()) + 1e-6 * top
        torch.testing.assert_close(got_g[n], r, rtol=5e-3, atol=tol, msg=lambda m, n=n: f"{n}: {m}")
    flat = [torch.cat([g[n].flatten() for n in ref_g]) for g in (ref_g, got_g)]
    assert float((flat[1] - flat[0]).norm() / flat[0].norm()) < 1e-3
