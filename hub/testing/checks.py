"""One check per mode of :data:`hub.testing.matrix.MODES`, run on an entry's build.

:func:`run_cell` runs a cell: a ``works`` cell runs its mode's check, a ``raises`` cell asserts
the mode's call raises :class:`hub.errors.InputError`. Failures raise ``AssertionError`` naming
the cell and the numbers. Only the public API is used: ``hub.load`` (of the saved directory),
``extract``, ``as_module``, ``net.transforms`` / ``net.tokenize``, ``net.save``, the CLI and
``hub.serve.app``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError
from hub.testing.builds import SAMPLE_TEXTS, Build, Builds, extract_all, modalities, sample_images
from hub.testing.matrix import FIDELITY, Cell

if TYPE_CHECKING:
    import torch

    from hub.backbone import Backbone
    from hub.twotower import AnyBackbone

__all__ = ["run_cell"]


def run_cell(cell: Cell, builds: Builds) -> None:
    """Run ``cell``'s check (or assert its ``InputError``) on its entry's build."""
    build = builds.get(cell.on)
    action = _CHECKS[cell.mode.name]
    with tempfile.TemporaryDirectory(prefix="hub-conformance-") as tmp:
        if cell.outcome == "raises":
            try:
                action(cell, build, Path(tmp))
            except InputError:
                return
            raise AssertionError(f"{cell.id}: expected InputError ({cell.reason}), nothing raised")
        if cell.outcome != "works":
            raise AssertionError(f"{cell.id} is {cell.outcome}: nothing to run")
        action(cell, build, Path(tmp))


# ---- comparisons --------------------------------------------------------------------------------
def _close(got: torch.Tensor, ref: torch.Tensor, what: str, rel: float = 1e-4) -> None:
    import torch

    got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    scale = max(float(ref.abs().max()), 1e-6)
    err = float((got - ref).abs().max()) / scale
    assert err <= rel and bool(torch.isfinite(got).all()), \
        f"{what}: max difference {err:.3g} of the reference's scale (allowed {rel:g})"


def _min_cosine(got: torch.Tensor, ref: torch.Tensor) -> float:
    import torch

    a, b = got.detach().float().flatten(1), ref.detach().float().flatten(1)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())


def _fidelity(got: torch.Tensor, ref: torch.Tensor, what: str, floor: float) -> None:
    cos = _min_cosine(got, ref)
    assert cos >= floor, f"{what}: min cosine against float32 {cos:.5f} < {floor}"


def _same_tokens(got: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, what: str,
                 rel: float = 1e-4) -> None:
    """(B, L, D) hidden states on real tokens only (padding lengths may differ)."""
    n = mask.shape[1]
    m = mask.bool()
    _close(got[:, :n][m], ref[:, :n][m], what, rel)


def _tower(bb: AnyBackbone, modality: str) -> Backbone:
    from hub.twotower import TwoTowerBackbone

    return bb.tower(modality) if isinstance(bb, TwoTowerBackbone) else bb


def _load(build: Build, **kw: Any) -> AnyBackbone:
    import hub

    return hub.load(build.directory, device="cpu", **kw)


# ---- extract ------------------------------------------------------------------------------------
def _extract(cell: Cell, build: Build, tmp: Path) -> None:
    if cell.mode.param == "float32":
        for modality, feats in build.reference.items():
            _shapes(build, modality, feats)
        return
    bb = _load(build, dtype=None if cell.mode.param == "auto" else cell.mode.param)
    import torch

    for modality, ref in build.reference.items():
        got = extract_all(bb, modality)
        want = torch.float32 if cell.mode.param == "auto" else torch.bfloat16
        if cell.mode.param == "auto" or bb.precision != "float32":
            assert got.pooled.dtype == want or cell.mode.param == "auto", \
                f"{cell.id}: pooled dtype {got.pooled.dtype}, expected {want}"
        if cell.mode.param == "auto":
            assert got.pooled.dtype == torch.float32, f"{cell.id}: auto gave {got.pooled.dtype}"
        _fidelity(got.pooled, ref.pooled, f"{cell.id} {modality} pooled ({bb.precision})",
                  FIDELITY[cell.mode.param])


def _shapes(build: Build, modality: str, feats: Any) -> None:
    import torch

    tower = _tower(build.backbone, modality)
    spec = build.backbone.spec
    for name, t in feats.stages.items():
        st = tower.stage_specs[name]
        assert t.shape[0] == len(feats.pooled), f"{build.name}.{name}: batch {t.shape[0]}"
        assert bool(torch.isfinite(t).all()), f"{build.name}.{name}: not finite"
        if st.layout == "NLC" or modality == "text":
            assert t.shape[-1] == st.channels, f"{build.name}.{name}: width {t.shape[-1]} != " \
                                               f"{st.channels}"
        else:
            assert t.shape[1] == st.channels, f"{build.name}.{name}: {t.shape[1]} channels != " \
                                              f"{st.channels}"
    width = spec.outputs.embedding_dim if spec.modality != "image-text" else None
    if width is not None:
        assert feats.pooled.shape[-1] == width, f"{build.name}: embedding width " \
                                                f"{feats.pooled.shape[-1]} != {width}"
    assert bool(torch.isfinite(feats.pooled).all()), f"{build.name}: pooled not finite"


# ---- as_module ----------------------------------------------------------------------------------
def _net_inputs(net: Any, modality: str) -> Any:
    import torch

    if modality == "text":
        return net.tokenize(list(SAMPLE_TEXTS))
    tf = net.transforms(train=False)
    return torch.stack([tf(image) for image in sample_images()])


def _equals_extract(net: Any, build: Build, modality: str, what: str) -> None:
    import torch

    net.eval()
    with torch.no_grad():
        out = net(_net_inputs(net, modality))
    ref = build.reference[modality]
    assert list(out) == list(net.stage_names), what
    for name, t in out.items():
        if modality == "text":
            _same_tokens(t, ref.stages[name], ref.mask, f"{what} {name}")
        else:
            _close(t, ref.stages[name], f"{what} {name}")


def _as_module(cell: Cell, build: Build, tmp: Path) -> None:
    bb: Any = build.backbone
    if cell.mode.param.startswith("islands="):
        _islands_module(cell, build, tmp)
        return
    if cell.mode.param == "tower=text":
        net = bb.as_module(modality="text")
        _equals_extract(net, build, "text", cell.id)
        return
    norm = cell.mode.param.split("=", 1)[1]
    modality = modalities(bb)[0]
    net = bb.as_module(norm=norm)
    _equals_extract(net, build, modality, cell.id)
    if norm == "frozen":  # in train mode too, no batch norm trains or follows batch statistics
        import torch

        net.train()
        live = [n for n, m in net.named_modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                and (m.training or any(p.requires_grad for p in m.parameters()))]
        assert not live, f"{cell.id}: batch norms still training after norm='frozen': {live[:5]}"


# ---- training modes -----------------------------------------------------------------------------
def _train_inputs(net: Any, build: Build, modality: str) -> Any:
    """What a training check feeds: the sample texts, or one seeded image (64 px where the network
    takes any size). One image: a gradient's presence and the checkpointed module's equality
    do not depend on the batch (the forward checks run two), and the training cells were the
    matrix's costliest (full-size ViTs, a forward and a backward each)."""
    import torch

    if modality == "text":
        return net.tokenize(list(SAMPLE_TEXTS))
    spec = build.backbone.spec
    pp = spec.preprocessing.image
    size = pp.size if pp is not None else 224
    small = spec.modality == "image" and not spec.architecture.startswith(("vit", "swin")) \
        and len(set(net.strides)) > 1
    side = 64 if small else size
    return torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))


def _backward(net: Any, build: Build, modality: str, what: str) -> dict[str, Any]:
    """A train-mode forward and backward of ``net``; every trainable parameter has a gradient and
    no frozen one has. Returns the trainable parameters' gradients."""
    net.train()
    out = net(_train_inputs(net, build, modality))
    loss = sum(t.float().pow(2).mean() for t in out.values())
    loss.backward()
    params = dict(net.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and p.grad is None]
    frozen = [n for n, p in params.items() if not p.requires_grad and p.grad is not None]
    assert not missing, f"{what}: trainable parameters without a gradient: {missing[:5]}"
    assert not frozen, f"{what}: frozen parameters with a gradient: {frozen[:5]}"
    return {n: p.grad for n, p in params.items() if p.requires_grad}


def _training(cell: Cell, build: Build, tmp: Path) -> None:
    import torch

    bb: Any = build.backbone
    net: Any
    modality = modalities(bb)[0]
    name = cell.mode.name
    if name == "freeze":
        first = next(iter(_tower(bb, modality).stage_specs))
        net = bb.as_module(freeze=first, norm="eval")
        frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
        assert frozen, f"{cell.id}: freeze={first!r} froze nothing"
    elif name == "output_stride":
        net = bb.as_module(output_stride=int(cell.mode.param))
        assert max(s for s in net.strides if s) == int(cell.mode.param), \
            f"{cell.id}: strides {net.strides}"
    elif name == "grad_checkpointing":
        # the same seed before each: dropout draws the same masks (checkpointing restores the
        # random state for its recomputation), so the two train-mode steps are one function
        torch.manual_seed(2)
        got = _backward(bb.as_module(grad_checkpointing=True), build, modality, cell.id)
        torch.manual_seed(2)
        _same_gradients(got, _backward(bb.as_module(), build, modality, cell.id), cell.id)
        return
    else:  # pyramid
        strides = {s.stride for s in _tower(bb, modality).stage_specs.values()}
        stages = None if len(strides) == 1 else [-1]
        net = bb.as_module(stages=stages, pyramid=True)
        assert list(net.strides) == [4, 8, 16, 32], f"{cell.id}: strides {net.strides}"
    _backward(net, build, modality, cell.id)


def _same_gradients(got: dict[str, Any], ref: dict[str, Any], what: str) -> None:
    """The checkpointed module's gradients ``got`` equal the plain module's ``ref``: each
    parameter's within 1e-4 of its largest value plus 1e-6 of the largest of all (the floor for
    gradients that are rounding noise)."""
    assert got.keys() == ref.keys(), f"{what}: parameters differ from the plain module's"
    top = max(float(g.abs().max()) for g in ref.values())
    for n, r in ref.items():
        err = float((got[n] - r).abs().max())
        allowed = 1e-4 * float(r.abs().max()) + 1e-6 * top
        assert err <= allowed, f"{what}: {n}'s gradient differs by {err:.3g} (allowed {allowed:.3g})"


# ---- save ---------------------------------------------------------------------------------------
def _save(cell: Cell, build: Build, tmp: Path) -> None:
    import hub

    bb = build.backbone
    modality = "text" if cell.mode.param == "tower=text" else modalities(bb)[0]
    parent: Any = bb
    net: Any = parent.as_module(modality=modality) if bb.modality == "image-text" \
        else parent.as_module()
    directory = net.save(tmp / "saved", name=f"{build.name}_conformance")
    again = hub.load(directory, device="cpu", dtype="float32")
    got, ref = extract_all(again, modality), build.reference[modality]
    _close(got.pooled, ref.pooled, f"{cell.id} pooled", 1e-5)
    for name, t in ref.stages.items():
        _close(got.stages[name], t, f"{cell.id} {name}", 1e-5)


# ---- adapters -----------------------------------------------------------------------------------
#: the target sets the adapter cell tries, in order (the first this network has)
ADAPTER_SETS = ("attention", "conv", "all-linear")


def _adapter_targets(bb: AnyBackbone) -> str:
    """The first of :data:`ADAPTER_SETS` that finds modules in ``bb``'s network (its provider's
    rules); the last one when none does (``as_module`` then raises the InputError)."""
    from hub.targets import TargetRules, find_targets

    provider = bb.provider
    rules = provider.adapter_rules() if provider is not None else TargetRules()
    for targets in ADAPTER_SETS:
        if all(find_targets(bb.module, rules, g) for g in targets.split("+")):
            return targets
    return ADAPTER_SETS[-1]


def _adapter(cell: Cell, build: Build, tmp: Path) -> None:
    import torch

    import hub

    bb: Any = build.backbone
    modality = modalities(bb)[0]
    torch.manual_seed(0)
    net = bb.as_module(adapter=cell.mode.param, rank=4, targets=_adapter_targets(bb))
    _equals_extract(net, build, modality, f"{cell.id} before training")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    opt.zero_grad()
    _backward(net, build, modality, cell.id)
    opt.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_" in k for k in changed), \
        f"{cell.id}: one step changed {sorted(k for k in changed if '.lora_' not in k)[:5]}"
    directory = net.save(tmp / "adapter", name=f"{build.name}_lora")
    weights = build.backbone.weights
    parent_size = weights.weights.stat().st_size if weights is not None else 0
    size = sum(p.stat().st_size for p in directory.iterdir() if p.name != "manifest.yaml")
    assert size < parent_size / 4, f"{cell.id}: the adapter takes {size} bytes, the parent {parent_size}"
    again = hub.load(directory, device="cpu", dtype="float32")
    got = extract_all(again, modality)
    net.eval()
    with torch.no_grad():
        out = net(_net_inputs(net, modality))
    for name, t in out.items():
        if modality == "text":
            _same_tokens(got.stages[name], t, got.mask, f"{cell.id} reloaded {name}")
        else:
            _close(got.stages[name], t, f"{cell.id} reloaded {name}")


# ---- precision islands, runtimes, compile -------------------------------------------------------
def _islands(cell: Cell, build: Build, tmp: Path) -> None:
    bb = _load(build, dtype="bfloat16", islands=cell.mode.param)
    got = extract_all(bb, "image")
    _fidelity(got.pooled, build.reference["image"].pooled, f"{cell.id} pooled", FIDELITY["islands"])


def _islands_module(cell: Cell, build: Build, tmp: Path) -> None:
    import torch

    bb = _load(build, dtype="bfloat16", islands=cell.mode.param.split("=", 1)[1])
    ref = build.reference["image"]
    net = bb.as_module().eval()
    with torch.no_grad():
        out = net(_net_inputs(net, "image"))
    for name, t in out.items():
        _fidelity(t, ref.stages[name], f"{cell.id} as_module {name}", FIDELITY["islands"])


def _openvino(cell: Cell, build: Build, tmp: Path) -> None:
    bb = _load(build, dtype="float32", runtime="openvino")
    for modality in modalities(bb):
        got, ref = extract_all(bb, modality), build.reference[modality]
        _fidelity(got.pooled, ref.pooled, f"{cell.id} pooled", 0.99999)


def _compile(cell: Cell, build: Build, tmp: Path) -> None:
    bb = _load(build, dtype="float32", compile={"backend": "eager"})
    for modality in modalities(bb):
        got, ref = extract_all(bb, modality), build.reference[modality]
        _close(got.pooled, ref.pooled, f"{cell.id} {modality} pooled", 1e-5)


# ---- the CLI doors ------------------------------------------------------------------------------
def _cli(args: list[str]) -> str:
    from typer.testing import CliRunner

    import hub
    from hub.cli import app

    hub.refresh()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"hub {' '.join(args)} exited {res.exit_code}: {res.output[-800:]}"
    return str(res.output)


def _inputs_on_disk(modality: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if modality == "text":
        path = folder / "texts.txt"
        path.write_text("\n".join(SAMPLE_TEXTS) + "\n", encoding="utf-8")
        return [path]
    paths = []
    for i, image in enumerate(sample_images()):
        path = folder / f"img{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def _cli_door(cell: Cell, build: Build, tmp: Path) -> None:
    import numpy as np
    import torch

    d = str(build.directory)
    bb = build.backbone
    modality = modalities(bb)[0]
    door = cell.mode.param
    if door == "info":
        assert build.name in _cli(["info", d]), f"{cell.id}: hub info does not name {build.name}"
        return
    paths = _inputs_on_disk(modality, tmp / "in")
    ref = build.reference[modality].pooled
    common = ["--device", "cpu", "--dtype", "float32"]
    if door == "extract":
        out = tmp / "feat.npy"
        _cli(["extract", d, *map(str, paths), "--out", str(out), *common])
        _close(torch.from_numpy(np.load(out)), ref, f"{cell.id} pooled", 1e-4)
    elif door == "dataset":
        import pyarrow.parquet as pq

        out = tmp / "ds"
        source = str(paths[0]) if modality == "text" else str(paths[0].parent)
        _cli(["extract", d, source, "--out", str(out), *common])
        table = pq.read_table(sorted(out.glob("*.parquet")))
        got = torch.tensor(np.array(table.column("embedding").to_pylist(), dtype=np.float32))
        assert len(got) == len(ref), f"{cell.id}: {len(got)} rows for {len(ref)} items"
        # row order follows the source's order (sorted file names, file lines)
        _close(got, ref, f"{cell.id} embeddings", 1e-4)
    else:  # classify
        labels = ["cat", "dog"]
        text = _cli(["classify", d, *map(str, paths), "--labels", ",".join(labels), "--json",
                     "--device", "cpu", "--dtype", "float32"])
        results = json.loads(text)["results"]
        from hub.twotower import TwoTowerBackbone

        if not isinstance(bb, TwoTowerBackbone):
            raise InputError(f"{cell.id}: hub classify needs an image-text backbone.")
        want = bb.zero_shot(sample_images(), labels)
        got = torch.tensor([[r["scores"][label] for label in labels] for r in results])
        _close(got, want.probs, f"{cell.id} probabilities", 1e-4)
        assert [r["label"] for r in results] == want.best, f"{cell.id}: {results}"


def _remote(cell: Cell, build: Build, tmp: Path) -> None:
    """A dataset job read from and written to a loopback S3 store equals extract()."""
    import io

    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from hub.dataset import extract_dataset
    from hub.testing.store import LoopbackS3
    from hub.twotower import TwoTowerBackbone

    modality = modalities(build.backbone)[0]
    paths = _inputs_on_disk(modality, tmp / "in")
    key = Path(tmp).name  # moto keeps every server's buckets in this process: a prefix per check
    server = LoopbackS3()
    try:
        with server.environment():
            server.upload(tmp / "in", f"s3://conformance/{key}/in")
            source = f"s3://conformance/{key}/in" + ("/texts.txt" if modality == "text" else "/")
            out = f"s3://conformance/{key}/feats"
            tower = modality if isinstance(build.backbone, TwoTowerBackbone) else None
            extract_dataset(str(build.directory), source, out, device="cpu", dtype="float32",
                            workers=0, modality=tower)
            manifest = json.loads(server.read(f"{out}/_manifest.json"))
            tables = [pq.read_table(io.BytesIO(server.read(f"{out}/{s['file']}")))
                      for s in manifest["shards"]]
    finally:
        server.stop()
    got = torch.tensor(np.array([r for t in tables for r in t.column("embedding").to_pylist()],
                                dtype=np.float32))
    ref = build.reference[modality].pooled
    assert len(got) == len(ref) == len(paths if modality == "image" else ref), \
        f"{cell.id}: {len(got)} rows for {len(ref)} items"
    _close(got, ref, f"{cell.id} embeddings", 1e-4)


def _serve(cell: Cell, build: Build, tmp: Path) -> None:
    """``hub.serve.app(DIR)`` over HTTP (in process, lifespan run): ``/v1/embeddings`` of every
    modality the entry takes, in one request, equal to extract()'s pooled features."""
    import base64
    import io

    import torch
    from fastapi.testclient import TestClient

    import hub.serve

    inputs: list[str] = []
    refs = []
    for modality in modalities(build.backbone):
        if modality == "text":
            inputs += list(SAMPLE_TEXTS)
        else:
            for image in sample_images():
                buf = io.BytesIO()
                image.save(buf, "PNG")  # lossless: the pixels extract() saw
                inputs.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
        refs.append(build.reference[modality].pooled)
    app = hub.serve.app([str(build.directory)], device="cpu", dtype="float32", warm=False)
    with TestClient(app) as client:
        name = client.get("/v1/models").json()["data"][0]["id"]
        r = client.post("/v1/embeddings", json={"model": name, "input": inputs})
    assert r.status_code == 200, f"{cell.id}: HTTP {r.status_code}: {r.text[:800]}"
    got = torch.tensor([d["embedding"] for d in r.json()["data"]])
    _close(got, torch.cat([x.float() for x in refs]), f"{cell.id} embeddings", 1e-4)


_CHECKS: dict[str, Callable[[Cell, Build, Path], None]] = {
    "extract": _extract, "as_module": _as_module, "freeze": _training,
    "output_stride": _training, "grad_checkpointing": _training, "pyramid": _training,
    "save": _save, "adapter": _adapter, "islands": _islands, "openvino": _openvino,
    "compile": _compile, "cli": _cli_door, "remote": _remote, "serve": _serve,
}
