"""Parity: hub's extract() against each provider library's own output, for the zoo architectures.

Every architecture is built by its library and filled with seeded random weights (batch-norm
statistics non-trivial; tests/zoo_support.py), written as safetensors, served by the loopback Hub
under the repo and file its manifest names, pulled and loaded by ``hub.load(name)``, and run through ``extract()``. The
reference is the library's own API on the same weights: timm's ``forward_intermediates`` /
``forward_features``, torchvision's ``create_feature_extractor``, transformers' ``hidden_states``.
Tolerance 1e-5 (float32; relative for large activations). Inputs are images already at the
manifest's size, so preprocessing is the normalisation alone, applied to the reference by hand.

Large architectures whose code is shared with a smaller entry are checked once per family here
(ResNet-152 through ResNet-50/101, ViT-L/16 through ViT-S/16 and ViT-B/16, DINOv2-B through
DINOv2-S, ConvNeXt-S/B through ConvNeXt-T, HRNet-W32 through HRNet-W18, VGG-19 and the BN
variants through VGG-16, ResNet-101/152 in torchvision through ResNet-50, BERT-large/cased through
BERT-base, RoBERTa-large through RoBERTa-base, GPT-2 medium through GPT-2); their shapes and figures are checked entry by entry in test_zoo_manifests.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from tests.zoo_support import (
    ZooBuilds,
    random_model,
    save_safetensors,
    serve_variant,
    zoo_specs,
)

pytestmark = pytest.mark.slow  # builds every zoo architecture at full size

SPECS = {s.name: s for s in zoo_specs()}
TIMM = ["resnet50", "resnet101", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
        "efficientnet_b3", "efficientnet_lite0", "efficientnetv2_s", "densenet121", "densenet169",
        "densenet201", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "vit_s16",
        "vit_b16", "hrnet_w18", "convnext_tiny", "swin_t", "dinov2_s14", "regnety_032"]
TORCHVISION_URL = ["mobilenet_v2_tv", "mobilenet_v3_large_tv", "mobilenet_v3_small_tv",
                   "vit_b16_tv"]
TEXT = ["bert_base", "gpt2", "roberta_base", "albert_base_v2", "distilbert_base"]
VARIANT = {"efficientnet_lite0": "ra_in1k"}  # its default weights are the real, pinned ones


def close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert got.shape == ref.shape, (what, tuple(got.shape), tuple(ref.shape))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{what}: {m}")


@pytest.fixture
def zoo_hub(online: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The loopback Hub, online, with a cache that is deleted after the test (weights are big)."""
    monkeypatch.setenv("HUB_CACHE", str(tmp_path / "cache"))
    yield online
    shutil.rmtree(tmp_path, ignore_errors=True)


def image_input(spec: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An image batch at the manifest's size, and the same batch normalised as hub does."""
    pp = spec.preprocessing.image
    x = torch.rand(2, 3, pp.size, pp.size, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
    std = torch.tensor(pp.std).view(1, 3, 1, 1)
    return x, (x - mean) / std


def as_grid(t: torch.Tensor, channels: int, prefix: int) -> torch.Tensor:
    """The library's final features in hub's NCHW layout (token sequences and NHWC maps)."""
    if t.ndim == 3:
        body = t[:, prefix:]
        side = int(round(body.shape[1] ** 0.5))
        return body.transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side)
    if t.shape[1] != channels and t.shape[-1] == channels:
        return t.permute(0, 3, 1, 2)
    return t


def pooled_reference(spec: Any, last: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    if spec.outputs.pool == "cls":
        assert tokens is not None
        return tokens[:, 0]
    return last.mean(dim=(2, 3))


def serve_build(hub_server: Any, builds: ZooBuilds, name: str, variant: str | None = None) -> Any:
    """Serve the session's random-weight build of ``name`` (tests/zoo_support.py: built once,
    shared with other modules) and return the library's model holding those weights."""
    build = builds.get(name)
    build.serve(hub_server, SPECS[name], variant)
    return build.model()


# ---- timm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TIMM)
def test_timm_entry_equals_timm(name: str, zoo_hub: Any, zoo_builds: ZooBuilds) -> None:
    spec = SPECS[name]
    model = serve_build(zoo_hub, zoo_builds, name, VARIANT.get(name))
    bb = hub.load(name, weights=VARIANT.get(name), device="cpu", dtype="float32", channels_last=False)
    x, xn = image_input(spec)
    feats = bb.extract(x, stages="all")

    info = [f["module"] for f in model.feature_info]
    with torch.inference_mode():
        final, inter = model.forward_intermediates(xn, indices=list(range(len(info))))
        features = model.forward_features(xn)
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    for st in spec.outputs.stages:
        if st.module not in info and st.module != "forward_features":
            continue  # a hooked submodule (HRNet's raw branches): test_hrnet_raw_branches...
        ref = as_grid(features, st.channels, prefix) if st.module == "forward_features" \
            else inter[info.index(st.module)]
        close(feats.stages[st.name], ref, f"{name}.{st.name}")
    last = spec.outputs.stages[-1]
    ref_last = as_grid(features, last.channels, prefix) if last.module == "forward_features" \
        else inter[info.index(last.module)]
    # the embedding is timm's own pre-logits (what create_model(num_classes=0) returns) where it
    # has the manifest's width; MobileNetV3 and VGG add head convs, so there hub pools the map
    width = getattr(model, "head_hidden_size", None) or model.num_features
    if width == spec.outputs.embedding_dim:
        with torch.inference_mode():
            ref_pooled = model.forward_head(features, pre_logits=True)
    else:
        ref_pooled = pooled_reference(spec, ref_last, features if features.ndim == 3 else None)
    close(feats.pooled, ref_pooled, f"{name}.pooled")


def test_hrnet_raw_branches_equal_timm_features_only_default_hrnet_features(
        zoo_hub: Any, zoo_builds: ZooBuilds) -> None:
    """branch1-4 are the last stage's raw outputs: timm's features_only=True with
    feature_location='' (stem + branches) on the same weights."""
    import timm

    spec = SPECS["hrnet_w18"]
    model = serve_build(zoo_hub, zoo_builds, "hrnet_w18")
    raw = timm.create_model(spec.architecture, features_only=True, feature_location="").eval()
    missing, unexpected = raw.load_state_dict(model.state_dict(), strict=False)
    assert not missing, missing  # the feature model is a subset of the classifier's weights
    bb = hub.load("hrnet_w18", device="cpu", dtype="float32", channels_last=False)
    x, xn = image_input(spec)
    names = ["stem", "branch1", "branch2", "branch3", "branch4"]
    feats = bb.extract(x, stages=names)
    with torch.inference_mode():
        ref = raw(xn)
    assert [s.channels for s in feats.stage_specs.values()][:5] == raw.feature_info.channels()
    for n, r in zip(names, ref):
        close(feats.stages[n], r, f"hrnet_w18.{n}")
    # asking for one branch alone gives the same map (the hook runs without the others)
    close(bb.extract(x, stages=["branch3"]).stages["branch3"], ref[3], "hrnet_w18.branch3 alone")


def test_seed_example_resnet50_is_torchvision_resnet50(zoo_hub: Any, tmp_path: Path) -> None:
    """The issue's example: hub.load("resnet50").extract(x, stages=[-1]) gives the (1, 2048, 7, 7)
    map of nn.Sequential(*list(torchvision.models.resnet50().children())[:-2]), same weights.

    timm's and torchvision's ResNet-50 have the same key names, so torchvision's state dict is
    served as the timm entry's file unchanged (and as resnet50_tv's V2 file)."""
    import torchvision

    tv = random_model(torchvision.models.resnet50)
    path = save_safetensors(tv, tmp_path / "resnet50.safetensors")
    serve_variant(zoo_hub, SPECS["resnet50"], path)
    serve_variant(zoo_hub, SPECS["resnet50_tv"], path)
    trunk = torch.nn.Sequential(*list(tv.children())[:-2]).eval()

    x, _ = image_input(SPECS["resnet50"])
    x = x[:1]
    for name in ("resnet50", "resnet50_tv"):
        pp = SPECS[name].preprocessing.image
        xn = (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)
        with torch.inference_mode():
            ref = trunk(xn)
        bb = hub.load(name, device="cpu", dtype="float32", channels_last=False)  # the same conv kernels
        got = bb.extract(x, stages=[-1]).stages["layer4"]
        assert tuple(got.shape) == (1, 2048, 7, 7)
        close(got, ref, name)
        # the default (channels_last for CNNs) runs other kernels: same map to float32 rounding
        got = hub.load(name, device="cpu", dtype="float32").extract(x, stages=[-1]).stages["layer4"]
        torch.testing.assert_close(got.contiguous(), ref, rtol=1e-4,
                                   atol=1e-4 * ref.abs().max().item())


# ---- torchvision ----------------------------------------------------------------------------
def _tv_reference(spec: Any, model: torch.nn.Module, xn: torch.Tensor) -> dict[str, torch.Tensor]:
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes = {st.module: st.name for st in spec.outputs.stages}
    with torch.inference_mode():
        out = create_feature_extractor(model, return_nodes=nodes)(xn)
    last = out[spec.outputs.stages[-1].name]
    return {st.name: as_grid(out[st.name], st.channels, 1) for st in spec.outputs.stages} | \
        {"_tokens": last if last.ndim == 3 else None}


def _check_tv(spec: Any, bb: Any, model: torch.nn.Module) -> None:
    x, xn = image_input(spec)
    feats = bb.extract(x, stages="all")
    ref = _tv_reference(spec, model, xn)
    for st in spec.outputs.stages:
        close(feats.stages[st.name].contiguous(), ref[st.name], f"{spec.name}.{st.name}")
    last = spec.outputs.stages[-1].name
    close(feats.pooled, pooled_reference(spec, ref[last], ref["_tokens"]), f"{spec.name}.pooled")


@pytest.mark.parametrize("name", ["resnet50_tv", "densenet121_tv"])
def test_torchvision_entry_equals_torchvision(name: str, zoo_hub: Any, zoo_builds: ZooBuilds) -> None:
    spec = SPECS[name]
    model = serve_build(zoo_hub, zoo_builds, name)  # torchvision's file, classifier included
    _check_tv(spec, hub.load(name, device="cpu", dtype="float32", channels_last=False), model)


def test_vgg16_one_file_two_providers(zoo_hub: Any, zoo_builds: ZooBuilds) -> None:
    """vgg16 (timm) and vgg16_tv (torchvision) name the same Hub file, in timm's layout; the
    torchvision trunk loads its features.* and leaves timm's head (pre_logits, head) out."""
    import torchvision

    model = serve_build(zoo_hub, zoo_builds, "vgg16")
    assert SPECS["vgg16_tv"].default_variant.sources == SPECS["vgg16"].default_variant.sources
    tv = torchvision.models.vgg16().eval()
    missing, unexpected = tv.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k.startswith("features.")}, strict=False)
    assert all(k.startswith("classifier.") for k in missing) and not unexpected
    _check_tv(SPECS["vgg16_tv"], hub.load("vgg16_tv", device="cpu", dtype="float32", channels_last=False), tv)
    # the timm entry on the same bytes against timm's own forward_intermediates
    x, xn = image_input(SPECS["vgg16"])
    feats = hub.load("vgg16", device="cpu", dtype="float32", channels_last=False).extract(x, stages="all")
    info = [f["module"] for f in model.feature_info]
    with torch.inference_mode():
        _, inter = model.forward_intermediates(xn, indices=list(range(len(info))))
    for st in SPECS["vgg16"].outputs.stages:
        close(feats.stages[st.name], inter[info.index(st.module)], f"vgg16.{st.name}")
    close(feats.pooled, inter[-1].mean(dim=(2, 3)), "vgg16.pooled")


@pytest.mark.parametrize("name", TORCHVISION_URL)
def test_torchvision_entry_from_download_pytorch_org_equals_torchvision(
        name: str, zoo_hub: Any, zoo_builds: ZooBuilds, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision publishes these weights only on download.pytorch.org: the manifest names that
    address and the sha256 prefix in torchvision's file name. A checkpoint in torchvision's own
    format (a pickle, classifier included) is served there through HUB_URL_MIRRORS."""
    import io

    from hub.manifest import UrlSource
    from hub.weights import resolve_weights

    spec = SPECS[name]
    for v in spec.weights:
        (src,) = v.sources
        assert isinstance(src, UrlSource) and v.format == "pickle"
        assert src.url.startswith("https://download.pytorch.org/models/")
        assert src.filename.endswith(f"-{src.sha256_prefix}.pth")  # torchvision's check_hash
    src = spec.default_variant.sources[0]
    model = zoo_builds.get(name).model()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    zoo_hub.add_repo("mirror/pytorch", {f"models/{src.filename}": buf.getvalue()})
    monkeypatch.setenv("HUB_URL_MIRRORS", "https://download.pytorch.org/="
                       f"{zoo_hub.endpoint}/mirror/pytorch/resolve/main/")
    # random bytes cannot carry torchvision's hash prefix: the real manifest refuses them
    with pytest.raises(hub.errors.IntegrityError, match=f"does not start with {src.sha256_prefix}"):
        hub.load(name, device="cpu", dtype="float32")
    # the same entry without the prefix check runs the rest of the path: download, safe
    # conversion, torchvision's trunk without its classifier, extract
    variant = spec.default_variant.model_copy(
        update={"sources": [src.model_copy(update={"sha256_prefix": None})]})
    open_spec = spec.model_copy(update={"weights": [variant]})
    files = resolve_weights(open_spec, variant)
    provider = hub.get_registry().provider("torchvision")
    bb = provider.build(open_spec, files, device=torch.device("cpu"), dtype=None)
    _check_tv(open_spec, bb, model)


# ---- transformers ---------------------------------------------------------------------------
TEXTS = ["the quick brown fox jumps over the lazy dog, and the cat sits on the mat.", "hi",
         "feature extraction turns images and text into vectors"]


@pytest.mark.parametrize("name", TEXT)
def test_transformers_entry_equals_transformers(name: str, zoo_hub: Any, zoo_builds: ZooBuilds,
                                               tmp_path: Path) -> None:
    import transformers

    spec = SPECS[name]
    build = zoo_builds.get(name)  # config.json and a test tokenizer come with it
    build.serve(zoo_hub, spec)
    model, files = build.model(), build.files
    bb = hub.load(name, device="cpu", dtype="float32")
    feats = bb.extract(TEXTS, stages="all")

    folder = tmp_path / "anchor"
    folder.mkdir()
    for k, v in files.items():
        (folder / k).write_bytes(v)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    enc = tok(TEXTS, padding=True, truncation=True, max_length=spec.preprocessing.text.max_length,
              return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc, output_hidden_states=True)
    mask = enc["attention_mask"].bool()
    assert torch.equal(feats.mask[:, :mask.shape[1]].bool(), mask)
    assert len(feats.stages) == spec.outputs.num_layers + 1
    for i, (stage, ref) in enumerate(zip(feats.stages.values(), out.hidden_states)):
        for b in range(len(TEXTS)):  # real tokens only: padding lengths may differ per batch
            close(stage[b, :mask.shape[1]][mask[b]], ref[b][mask[b]], f"{name}.layer{i}[{b}]")
    close(feats.stages[f"layer{spec.outputs.num_layers}"][:, :mask.shape[1]][mask],
          out.last_hidden_state[mask], f"{name}.last_hidden_state")
    last = out.last_hidden_state
    if spec.outputs.pool == "cls":
        ref_pooled = last[:, 0]
    else:
        m = mask.unsqueeze(-1).to(last.dtype)
        ref_pooled = (last * m).sum(1) / m.sum(1)
    close(feats.pooled, ref_pooled, f"{name}.pooled")
