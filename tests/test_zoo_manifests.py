"""The zoo's manifests against the architectures themselves (manifests/*.yaml).

Every figure a manifest states is checked here against something that can be computed: params
from the instantiated architecture (within 0.5 %), GMACs from torch's flop counter at the declared
input size (within 5 %), stage channels/strides/layout from a forward pass through the provider's
own backbone. Image models are built on the meta device (shapes only, no memory); text models
allocate uninitialised memory for one short forward. Sources are checked against what timm's
pretrained configs record, and top-1 figures must cite where they come from.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import hub
from hub.manifest import HuggingFaceSource
from tests.zoo_support import (
    TEXT_CONFIGS,
    count_params_m,
    full_model,
    gmacs,
    meta_backbone,
    zoo_specs,
)

SPECS = {s.name: s for s in zoo_specs()}
IMAGE = sorted(n for n, s in SPECS.items() if s.modality == "image")
TEXT = sorted(n for n, s in SPECS.items() if s.modality == "text")
IMAGE_TEXT = sorted(n for n, s in SPECS.items() if s.modality == "image-text")
OPEN_CLIP = sorted(n for n, s in SPECS.items() if s.provider == "open_clip")
PICKLE_ONLY = {"clip_vit_b32_hf"}  # its figures are checked in tests/test_transformers_twotower.py

FAMILIES = {
    "image": ["resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "vgg16_bn", "vgg19_bn",
              "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
              "efficientnet_lite0", "densenet121", "densenet169", "densenet201", "mobilenet_v2",
              "mobilenet_v3_large", "mobilenet_v3_small", "vit_s16", "vit_b16", "vit_l16",
              "hrnet_w18", "hrnet_w32", "convnext_tiny", "convnext_small", "convnext_base",
              "swin_t", "dinov2_s14", "dinov2_b14", "regnety_032", "efficientnetv2_s",
              "resnet50_tv", "resnet101_tv", "resnet152_tv", "vgg16_tv", "vgg19_tv",
              "vgg16_bn_tv", "vgg19_bn_tv", "densenet121_tv", "mobilenet_v2_tv",
              "mobilenet_v3_large_tv", "mobilenet_v3_small_tv", "vit_b16_tv"],
    "text": ["bert_base", "bert_base_cased", "bert_large", "gpt2", "gpt2_medium", "roberta_base",
             "roberta_large", "albert_base_v2", "distilbert_base", "minilm_l6"],
    "image-text": ["clip_vit_b32", "clip_vit_b16", "clip_vit_l14", "openclip_vit_b32_laion2b",
                   "siglip_b16", "siglip_v2_b16", "mobileclip_s2", "clip_vit_b32_hf",
                   "siglip_b16_hf"],
}
ANCHOR_ALIASES = {"vit_b16": "vit_base_patch16_224", "vit_s16": "vit_small_patch16_224",
                  "vit_l16": "vit_large_patch16_224", "bert_base": "bert-base-uncased",
                  "swin_t": "swin_tiny_patch4_window7_224", "mobilenet_v2": "mobilenetv2_100",
                  "dinov2_s14": "vit_small_patch14_dinov2", "gpt2_medium": "gpt2-medium",
                  "roberta_base": "roberta-base", "minilm_l6": "all-MiniLM-L6-v2",
                  "efficientnetv2_s": "tf_efficientnetv2_s"}


def test_the_zoo_has_every_family_the_issue_names() -> None:
    assert sorted(FAMILIES["image"]) == IMAGE
    assert sorted(FAMILIES["text"]) == TEXT
    assert sorted(FAMILIES["image-text"]) == IMAGE_TEXT
    cat = hub.get_catalog()
    for name, alias in ANCHOR_ALIASES.items():
        assert cat.get(alias).name == name


@pytest.mark.parametrize("name", sorted(SPECS))
def test_entry_is_documented_and_sourced(name: str) -> None:
    spec = SPECS[name]
    assert re.fullmatch(r"[a-z0-9_]+", name)
    assert spec.license and spec.tasks and spec.paper is not None and spec.description
    for v in spec.weights:
        hf = [s for s in v.sources if isinstance(s, HuggingFaceSource)]
        # unpinned is said explicitly: revision main and no sha256
        assert v.pinned or (v.sha256 is None and all(s.revision == "main" for s in hf))
        for src in hf:
            weights_file = "open_clip_model.safetensors" if spec.provider == "open_clip" \
                else "model.safetensors"
            if spec.name in PICKLE_ONLY:  # the publisher's repo has no safetensors on main
                weights_file = "pytorch_model.bin"
            assert src.file == weights_file and v.format == ("pickle" if spec.name in PICKLE_ONLY
                                                             else "safetensors") or v.pinned
            if src.repo.startswith("timm/") and spec.provider != "open_clip":  # the repo timm's own pretrained config records
                from timm.models import get_pretrained_cfg

                tag = src.repo.removeprefix("timm/")
                assert get_pretrained_cfg(tag).hf_hub_id == src.repo
                if spec.provider == "timm":
                    assert tag.split(".")[0] == spec.architecture
            if spec.modality == "text":  # the canonical repo, also usable as the name
                assert src.repo in spec.aliases
    if spec.provider == "timm":
        assert spec.architecture in [spec.name, *spec.aliases]
    if spec.provider == "torchvision":
        assert f"torchvision/{spec.architecture}" in spec.aliases
    top1 = spec.stats.top1
    if top1 is not None:
        assert top1.dataset.startswith("imagenet-1k") and top1.source
        if top1.source.startswith("timm results"):  # the row of the default weights
            default = spec.default_variant
            assert default is not None
            repo = next(s.repo for s in default.sources if isinstance(s, HuggingFaceSource))
            assert f"{repo.removeprefix('timm/')}," in top1.source
    else:
        assert spec.modality == "text" or not spec.weights


@pytest.mark.parametrize("name", IMAGE)
def test_image_figures_match_the_architecture(name: str) -> None:
    spec = SPECS[name]
    model = full_model(spec)
    assert spec.stats.params_m is not None and spec.stats.gmacs is not None
    assert count_params_m(model) == pytest.approx(spec.stats.params_m, rel=0.005)
    size = spec.stats.input_size
    assert size is not None and spec.preprocessing.image is not None
    assert size == spec.preprocessing.image.size
    assert gmacs(model, size) == pytest.approx(spec.stats.gmacs, rel=0.05)

    bb = meta_backbone(spec)
    names = [s.name for s in spec.outputs.stages]
    with torch.no_grad():  # the provider's forward, then the core's layout and pooling
        raw = bb.forward(torch.empty(1, 3, size, size, device="meta"), names)
        feats = bb.finish(raw, names, spec.outputs.pool)
    for st in spec.outputs.stages:
        t = feats.stages[st.name]
        assert st.layout == "NCHW" and t.ndim == 4, st.name
        assert t.shape[1] == st.channels, (st.name, tuple(t.shape))
        assert st.stride is not None
        assert t.shape[2] in (size // st.stride, math.ceil(size / st.stride)), (st.name, tuple(t.shape))
    assert tuple(feats.pooled.shape) == (1, spec.outputs.embedding_dim)


@pytest.mark.parametrize("name", TEXT)
def test_text_figures_match_the_architecture(name: str, minilm_dir) -> None:
    import transformers

    spec = SPECS[name]
    config = transformers.AutoConfig.from_pretrained(str(minilm_dir)) if name not in TEXT_CONFIGS \
        else None
    model = full_model(spec, minilm_config=config)
    assert count_params_m(model) == pytest.approx(spec.stats.params_m, rel=0.005)
    assert model.config.model_type == spec.architecture
    model = model.to_empty(device="cpu")  # uninitialised memory: shapes are what is checked
    for b in model.buffers():
        b.zero_()
    ids = torch.zeros(2, 7, dtype=torch.long)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    assert len(out.hidden_states) == spec.outputs.num_layers + 1
    assert {tuple(h.shape) for h in out.hidden_states} == {(2, 7, spec.outputs.embedding_dim)}
    assert spec.preprocessing.text is not None
    assert spec.preprocessing.text.max_length <= model.config.max_position_embeddings


@pytest.mark.parametrize("name", OPEN_CLIP)
def test_image_text_figures_match_the_architecture(name: str) -> None:
    """params: both towers as open_clip builds them; GMACs: the image tower, one image at
    input_size; stages from a meta forward of the provider's image tower; the embedding width,
    context length and text layers from the open_clip config."""
    import open_clip

    spec = SPECS[name]
    model = full_model(spec)
    assert count_params_m(model) == pytest.approx(spec.stats.params_m, rel=0.005)
    size = spec.stats.input_size
    assert size is not None and spec.preprocessing.image is not None
    assert size == spec.preprocessing.image.size
    assert gmacs(model.visual, size) == pytest.approx(spec.stats.gmacs, rel=0.05)
    config = open_clip.get_model_config(spec.architecture)
    assert config["embed_dim"] == spec.outputs.embedding_dim
    assert spec.preprocessing.text is not None
    assert config["text_cfg"]["context_length"] == spec.preprocessing.text.max_length
    assert config["text_cfg"]["layers"] == spec.outputs.num_layers
    bb = meta_backbone(spec).image
    names = [s.name for s in spec.outputs.stages]
    with torch.no_grad():
        raw = bb.forward(torch.empty(1, 3, size, size, device="meta"), names)
        feats = bb.finish(raw, names, spec.outputs.pool)
    for st in spec.outputs.stages:
        t = feats.stages[st.name]
        assert t.shape[1] == st.channels and st.stride is not None, (st.name, tuple(t.shape))
        assert t.shape[2] == size // st.stride, (st.name, tuple(t.shape))
    assert tuple(feats.pooled.shape) == (1, spec.outputs.embedding_dim)


# the config.json values of google/siglip-base-patch16-224 are transformers' SiglipConfig defaults
HF_IMAGE_TEXT_CONFIGS = {"siglip_b16_hf": "SiglipConfig"}


@pytest.mark.parametrize("name", sorted(n for n in IMAGE_TEXT if SPECS[n].provider == "transformers"
                                        and n not in PICKLE_ONLY))
def test_transformers_image_text_figures_match_the_architecture(name: str) -> None:
    """params: both towers as transformers builds them; GMACs: the vision tower at input_size;
    stage widths and strides from a meta forward of its hidden states; context length, text
    layers and embedding width from the config."""
    import transformers

    spec = SPECS[name]
    config = getattr(transformers, HF_IMAGE_TEXT_CONFIGS[name])()
    assert config.model_type == spec.architecture
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config).eval()
    assert count_params_m(model) == pytest.approx(spec.stats.params_m, rel=0.005)
    size = spec.stats.input_size
    assert size is not None and spec.preprocessing.image is not None
    assert size == spec.preprocessing.image.size == config.vision_config.image_size
    assert gmacs(model.vision_model, size) == pytest.approx(spec.stats.gmacs, rel=0.05)
    assert spec.preprocessing.text is not None
    assert spec.preprocessing.text.max_length == config.text_config.max_position_embeddings
    assert spec.outputs.num_layers == config.text_config.num_hidden_layers
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=torch.empty(1, 3, size, size, device="meta"),
                                    output_hidden_states=True).hidden_states
        pooled = model.get_image_features(pixel_values=torch.empty(1, 3, size, size, device="meta"))
    for st in spec.outputs.stages:
        h = hidden[int(st.module)]
        assert st.stride is not None and h.shape[1] == (size // st.stride) ** 2, st.name
        assert h.shape[2] == st.channels, (st.name, tuple(h.shape))
    pooled = pooled if isinstance(pooled, torch.Tensor) else pooled.pooler_output
    assert pooled.shape[-1] == spec.outputs.embedding_dim
