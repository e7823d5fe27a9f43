"""The timm provider (plugins/hub_timm): pooled embeddings are timm's own pre-logits features."""

from __future__ import annotations

import pytest
import torch

import hub


@pytest.mark.slow  # builds full-size timm architectures
@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_lite0", "vit_s16"])
def test_default_pooling_is_timms_pre_logits(name: str) -> None:
    bb = hub.load(name, pretrained=False, device="cpu", dtype="float32", channels_last=False)
    size = bb.spec.preprocessing.image.size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    f = bb.extract(x, stages=[])
    pp = bb.spec.preprocessing.image
    xn = (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        ref = bb.module.forward_head(bb.module.forward_features(xn), pre_logits=True)
    assert f.pooled.shape == ref.shape
    assert (f.pooled - ref).abs().max().item() <= 1e-5


@pytest.mark.slow  # builds a full-size convnext_tiny
def test_convnext_default_pool_applies_the_head_norm_and_plain_avg_is_still_available() -> None:
    bb = hub.load("convnext_tiny", pretrained=False, device="cpu", dtype="float32", channels_last=False)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    default = bb.extract(x, stages=[-1])
    plain = bb.extract(x, stages=[-1], pool="max")
    stage4 = default.stages[list(default.stages)[-1]]
    assert torch.allclose(plain.pooled, stage4.amax(dim=(2, 3)), atol=1e-6)
    # timm's head LayerNorm makes the default embedding differ from a bare average of stage 4
    assert not torch.allclose(default.pooled, stage4.mean(dim=(2, 3)), atol=1e-3)


def _with_stages(name: str, stages: list[dict]) -> object:
    spec = hub.get_catalog().get(name).spec
    outputs = spec.outputs.model_copy(update={"stages": [
        spec.outputs.stages[0].model_copy(update=s) for s in stages]})
    return spec.model_copy(update={"outputs": outputs})


@pytest.mark.parametrize("module", ["stage9[0]", "stage4[x]", "1bad", ""])
def test_a_stage_naming_no_feature_info_module_nor_submodule_is_a_manifest_error(module: str) -> None:
    spec = _with_stages("hrnet_w18", [{"name": "odd", "module": module},
                                      {"name": "head", "module": "forward_features"}])
    provider = hub.get_registry().provider("timm")
    with pytest.raises(hub.errors.ManifestError, match="nor a submodule path"):
        provider.build(spec, None, device=torch.device("cpu"), dtype=None)


def test_a_hooked_stage_cannot_be_the_last_one() -> None:
    spec = _with_stages("hrnet_w18", [{"name": "b1", "module": "stage4[0]"}])
    provider = hub.get_registry().provider("timm")
    with pytest.raises(hub.errors.ManifestError, match="last stage 'b1'"):
        provider.build(spec, None, device=torch.device("cpu"), dtype=None)


@pytest.mark.slow  # builds a full-size hrnet_w18
def test_hooked_stages_are_per_call_and_per_thread() -> None:
    """Concurrent extract() calls on one backbone each get their own branch maps, and a forward
    outside extract() (the module used directly) captures nothing."""
    from concurrent.futures import ThreadPoolExecutor

    bb = hub.load("hrnet_w18", pretrained=False, device="cpu", dtype="float32", channels_last=False)
    xs = [torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    alone = [bb.extract(x, stages=["branch1", "branch4"]) for x in xs]
    assert alone[0].stages["branch1"].shape == (1, 18, 56, 56)
    assert alone[0].stages["branch4"].shape == (1, 144, 7, 7)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda x: bb.extract(x, stages=["branch1", "branch4"]), xs * 2))
    for i, f in enumerate(together):
        for n in ("branch1", "branch4"):
            assert torch.allclose(f.stages[n], alone[i % 4].stages[n], atol=1e-5), (i, n)
    with torch.inference_mode():
        bb.module.forward_features(torch.rand(1, 3, 64, 64))
    assert getattr(bb._local, "captured", None) is None


def test_an_architecture_timm_does_not_know_is_a_manifest_error_naming_it() -> None:
    spec = hub.get_catalog().get("resnet50").spec.model_copy(update={"architecture": "resnet_9000"})
    provider = hub.get_registry().provider("timm")
    with pytest.raises(hub.errors.ManifestError, match="no architecture 'resnet_9000'") as info:
        provider.build(spec, None, device=torch.device("cpu"), dtype=None)
    assert info.value.model == "resnet50" and info.value.field == "architecture"
