"""Training either tower of an image-text backbone: ``m.as_module(modality="text")`` and the
transformers provider's image tower.

For each provider path (open_clip ``CLIP`` with its causal text blocks, open_clip
``CustomTextCLIP`` (MobileCLIP, and SigLIP with its Hugging Face tokenizer), transformers
``CLIPModel`` and ``SiglipModel``) the trunk in eval mode gives ``extract()``'s hidden states and,
through ``net.pooling_head()``, its embedding (``normalize=False``) to 1e-5; every trainable
parameter gets a gradient; a few optimizer steps move the embedding; the module is float32
whatever precision the backbone runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import hub
from tests.zoo_support import close, normalized, random_model, save_safetensors, zoo_specs

pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")
SPECS = {s.name: s for s in zoo_specs()}
TEXTS = ["a cat sits on the mat", "a quick brown fox jumps over the lazy dog", "hi"]
WIDTH = 64


def narrow(spec: Any) -> Any:
    """The entry with the narrow test model's widths (stages and embedding)."""
    stages = [st.model_copy(update={"channels": WIDTH}) for st in spec.outputs.stages]
    return spec.model_copy(update={"outputs": spec.outputs.model_copy(
        update={"stages": stages, "embedding_dim": WIDTH})})


def hf_backbone(name: str, tmp_path: Path, precision: str | None = None) -> Any:
    """A transformers image-text backbone (12 + 12 layers at width 64) built by the provider from
    local files, as a pull leaves them, configured as ``hub.load(dtype=precision)`` does
    (``"auto"``: bf16, as it picks on a CPU with AMX)."""
    from hub.execution import apply_plan, network_facts
    from hub.plan import Facts, Request, plan_execution, torch_dtype
    from hub.provider import WeightFiles

    if name == "siglip_b16_hf":
        from tests.test_transformers_siglip import sentencepiece_files, siglip_model

        model, files = siglip_model(), sentencepiece_files()
    else:
        from tests.test_transformers_twotower import tokenizer_files

        small = dict(hidden_size=WIDTH, num_attention_heads=2, intermediate_size=2 * WIDTH)
        config = transformers.CLIPConfig(
            text_config=dict(small, eos_token_id=2, bos_token_id=0, pad_token_id=1),
            vision_config=dict(small, patch_size=32), projection_dim=WIDTH)
        model = random_model(lambda: transformers.CLIPModel(config))
        with torch.no_grad():
            model.logit_scale.fill_(torch.tensor(100.0).log())
        files = {**tokenizer_files(), "config.json": config.to_json_string().encode()}
    spec = narrow(SPECS[name])
    local = {}
    for f in spec.default_variant.files:
        (tmp_path / f.path).write_bytes(files[f.path])
        local[f.path] = tmp_path / f.path
    path = save_safetensors(model, tmp_path / "model.safetensors")
    wf = WeightFiles(variant=spec.default_variant, weights=path, sha256="0" * 64, files=local)
    provider = hub.get_registry().provider("transformers")
    request = Request.of(dtype=precision)  # as hub.load: planned, built, the plan applied
    facts = Facts("image-text", True, name=spec.name,
                  auto_choice="bfloat16" if precision == "auto" else None)
    bb = provider.build(spec, wf, device=torch.device("cpu"),
                        dtype=torch_dtype(plan_execution(request, facts).build))
    return apply_plan(bb, plan_execution(request, network_facts(facts, bb.module)),
                      provider=provider)


def open_clip_backbone(name: str, tmp_path: Path) -> Any:
    """An open_clip entry with open_clip's own random initialisation (SigLIP: with the small
    Hugging Face tokenizer of tests/test_open_clip_provider.py, its companion files)."""
    import open_clip

    bb = hub.load(name, pretrained=False, device="cpu", dtype="float32")
    if name == "siglip_b16":
        from tests.test_open_clip_provider import siglip_tokenizer_files

        for k, v in siglip_tokenizer_files().items():
            (tmp_path / k).write_bytes(v)
        text_cfg = open_clip.get_model_config(SPECS[name].architecture)["text_cfg"]
        bb.text.tokenizer = open_clip.tokenizer.HFTokenizer(
            str(tmp_path), context_length=64, **text_cfg.get("tokenizer_kwargs", {}))
    return bb


def check_text_trunk(bb: Any) -> None:
    net = bb.as_module(modality="text")
    assert net.modality == "text" and net.stage_names == list(bb.text.stage_specs)
    batch = net.tokenize(TEXTS)
    head = net.pooling_head()
    net.eval()
    with torch.no_grad():
        out = net(batch)
        pooled = head(out, batch["attention_mask"])
    ref = bb.extract(TEXTS, stages="all", normalize=False)
    for name, t in out.items():
        close(t, ref.stages[name], f"{bb.name} {name}")
    close(pooled, ref.pooled, f"{bb.name} text embedding")
    # nothing of the image tower, no logit scale; every parameter trains
    names = [n for n, _ in net.named_parameters()]
    assert not any("visual" in n or "vision" in n or "logit" in n for n in names)
    net.train()
    sum(t.float().pow(2).mean() for t in net(batch).values()).backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None]
    assert all(p.dtype == torch.float32 for p in [*net.parameters(), *head.parameters()])


def train_steps(net: Any, head: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Three AdamW steps pulling the first text's embedding towards the second's: (before, after)."""
    def embed() -> torch.Tensor:
        return head(net(batch), batch["attention_mask"])

    net.eval()
    with torch.no_grad():
        before = embed()
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for _ in range(3):
        e = torch.nn.functional.normalize(embed(), dim=-1)
        loss = -(e[0] * e[1]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = embed()
    return before, after


@pytest.mark.parametrize("name", ["clip_vit_b32", "mobileclip_s2", "siglip_b16"])
def test_open_clip_text_trunk_equals_extract(name: str, tmp_path: Path, one_torch_thread: None) -> None:
    bb = open_clip_backbone(name, tmp_path)
    check_text_trunk(bb)
    net = bb.as_module(["layer2"], modality="text")  # an early layer: nothing after it is owned
    assert net.stage_names == ["layer2"] and net.pooling_head().__class__.__name__ == "_Pool"
    assert max(int(n.split("resblocks.")[1].split(".")[0])
               for n, _ in net.named_parameters() if "resblocks." in n) == 1


@pytest.mark.parametrize("name", ["clip_vit_b32_hf", "siglip_b16_hf"])
def test_transformers_text_trunk_equals_extract(name: str, tmp_path: Path) -> None:
    check_text_trunk(hf_backbone(name, tmp_path))


@pytest.mark.parametrize("name", ["clip_vit_b32_hf", "siglip_b16_hf"])
def test_transformers_image_trunk_equals_extract(name: str, tmp_path: Path) -> None:
    """The transformers image tower's trunk: NCHW grids (CLIP's class token as the prefix) equal
    extract()'s; later layers, the post-norm and SigLIP's pooling head are not owned."""
    bb = hf_backbone(name, tmp_path)
    net = bb.as_module(["block3", "block6"], freeze="block3")
    strides = [s.stride for s in bb.image.stage_specs.values()][:2]
    assert net.out_channels == [WIDTH, WIDTH] and net.strides == strides
    pp = bb.spec.preprocessing.image
    x = torch.rand(2, 3, pp.size, pp.size, generator=torch.Generator().manual_seed(0))
    xn = normalized(x, pp)
    net.eval()
    with torch.no_grad():
        out = net(xn)
    ref = bb.extract(x, stages=["block3", "block6"])
    for k in ("block3", "block6"):
        close(out[k], ref.stages[k], f"{name} {k}")
        if name == "clip_vit_b32_hf":
            close(out.prefix[k], ref.prefix[k], f"{name} {k} class token")
    names = [n for n, _ in net.named_parameters()]
    assert not any(".layers.6." in n or "post_layernorm" in n or ".head." in n or "text" in n
                   for n in names)
    net.train()
    net(xn)["block6"].sum().backward()
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert all(p.grad is None for p in net.parameters() if not p.requires_grad)


@pytest.mark.parametrize("name", ["clip_vit_b32_hf", "siglip_b16_hf"])
def test_text_tower_trains(name: str, tmp_path: Path, one_torch_thread: None) -> None:
    """Optimizer steps change the text embedding; the backbone itself is untouched."""
    bb = hf_backbone(name, tmp_path)
    ref = bb.extract(TEXTS, normalize=False).pooled
    net = bb.as_module(modality="text")
    before, after = train_steps(net, net.pooling_head(), net.tokenize(TEXTS))
    close(before, ref, "embedding before training")
    assert (after - before).abs().max() > 1e-3
    cos = torch.nn.functional.cosine_similarity
    assert cos(after[0], after[1], dim=0) > cos(before[0], before[1], dim=0)
    close(bb.extract(TEXTS, normalize=False).pooled, ref, "the backbone after training a copy")


@pytest.mark.parametrize("dtype", ["bfloat16", "auto"])
def test_text_trunk_is_float32_when_the_backbone_runs_bf16(dtype: str, tmp_path: Path) -> None:
    """dtype="bfloat16" casts the shared network; "auto" (bf16 here) rebuilds both towers from the
    weight files in float32: either way the text trunk is float32 and, for "auto", starts from
    the exact weights (equal to a float32 backbone's extract())."""
    ref = hf_backbone("siglip_b16_hf", tmp_path)
    bb = hf_backbone("siglip_b16_hf", tmp_path, precision=dtype)
    assert bb.text.precision == "bfloat16" and bb.text.auto == (dtype == "auto")
    net = bb.as_module(modality="text")
    head = net.pooling_head()
    assert {p.dtype for p in [*net.parameters(), *head.parameters()]} == {torch.float32}
    batch = net.tokenize(TEXTS)
    net.eval()
    with torch.no_grad():
        pooled = head(net(batch), batch["attention_mask"])
    want = ref.extract(TEXTS, normalize=False).pooled
    if dtype == "auto":
        close(pooled, want, "auto: rebuilt in float32")
    else:  # cast back up from bf16 weights: close, not equal
        assert torch.nn.functional.cosine_similarity(pooled, want).min() > 0.99


def test_a_trained_text_tower_saves_as_an_image_text_backbone(tmp_path: Path,
                                                              one_torch_thread: None) -> None:
    """net.save() of a text trunk writes the whole image-text entry (the parent's image tower,
    the trained text layers; the pooling head's weights are the head's own, saved by the user):
    hub.load(directory) has both towers, the new text embeddings and the old image ones."""
    (tmp_path / "parent").mkdir()
    bb = hf_backbone("siglip_b16_hf", tmp_path / "parent")
    net = bb.as_module(modality="text")
    head = net.pooling_head()
    train_steps(net, head, net.tokenize(TEXTS))
    saved = hub.load(net.save(tmp_path / "tuned", name="siglip_tuned"), device="cpu",
                     dtype="float32")
    assert saved.modality == "image-text" and saved.spec.parent.name == bb.name
    batch = net.tokenize(TEXTS)
    net.eval()
    with torch.no_grad():
        tuned = net(batch)
    got = saved.extract(TEXTS, stages="all", normalize=False)
    for k, t in tuned.items():
        close(got.stages[k], t, f"saved {k}")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    close(saved.extract(x).pooled, bb.extract(x).pooled, "image tower unchanged")


@pytest.mark.parametrize("name", ["clip_vit_b32", "siglip_b16_hf"])
def test_a_saved_random_weight_tower_loads_back_scoring_as_its_weights(
        name: str, tmp_path: Path, one_torch_thread: None) -> None:
    """The saved manifest describes the weights it saves: open_clip's random CLIP holds
    exp(logit_scale) = 14.29 where the manifest says 100 (hub.load refused the directory with
    WeightMismatchError); the saved entry takes the scale from the weights. SigLIP's manifest
    already says `weights` (scale and bias): unchanged."""
    import math

    import yaml

    (tmp_path / "parent").mkdir()
    bb = (open_clip_backbone(name, tmp_path / "parent") if name == "clip_vit_b32"
          else hf_backbone(name, tmp_path / "parent"))
    state: Any = bb.module.state_dict()
    own_scale = math.exp(float(state["logit_scale"]))
    own_bias = float(state["logit_bias"]) if "logit_bias" in state else None
    net = bb.as_module(modality="text")
    saved = hub.load(net.save(tmp_path / "tuned", name="tower_tuned"), device="cpu", dtype="float32")
    scoring = yaml.safe_load((tmp_path / "tuned" / "manifest.yaml").read_text())["backbones"][0]["scoring"]
    assert scoring == {**bb.spec.scoring.model_dump(mode="json", exclude_none=True), "logit_scale": "weights"}
    assert saved.logit_scale == pytest.approx(own_scale, rel=1e-6)
    assert saved.logit_bias == (pytest.approx(own_bias, rel=1e-6) if own_bias is not None else None)
    if name == "clip_vit_b32":
        assert bb.logit_scale == 100.0 and own_scale == pytest.approx(1 / 0.07, rel=1e-6)
    else:
        assert saved.logit_scale == bb.logit_scale and saved.logit_bias == bb.logit_bias
    batch = net.tokenize(TEXTS)
    with torch.no_grad():
        tuned = net.eval()(batch)
    got = saved.extract(TEXTS, stages="all", normalize=False)
    for k, t in tuned.items():
        close(got.stages[k], t, f"saved {k}")
