"""Fidelity of the reduced precisions on the real weights available offline.

What ``dtype="auto"`` gives on a CPU with AMX (bfloat16 weights, features pooled and returned
in float32) and what ``dtype="bfloat16"`` gives must stay close to float32: pooled embeddings of
minilm_l6 on mixed texts with a minimum cosine of 0.999. efficientnet_lite0 in bf16 keeps the
ImageNet class of chelsea, coffee and rocket from the checkpoint's own classifier but its pooled
embeddings drift to a cosine of 0.997 on scikit-image's photos, so "auto" keeps networks with
depthwise convolutions in float32 (:func:`hub.execution.keeps_float32`), exactly, unless asked
for float32 islands (``islands="early"``, :mod:`hub.islands`): the stem and the blocks at 1/2
and 1/4 of the input's side kept in float32 bring it to 0.9994.
bfloat16 is computable on every CPU (slowly without bf16 units), so these run everywhere;
``HUB_DTYPE=bfloat16`` makes "auto" pick it whatever the machine measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hub

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins", "hubble_deep_field",
          "immunohistochemistry", "colorwheel", "brick")
#: ImageNet classes the checkpoint's classifier gives in float32 (tests/test_real_models.py)
CLASSES = {"chelsea": (281, 282, 285), "coffee": (967,), "rocket": (657,)}
TEXTS = [
    "A cat sits on the mat.",
    "Hi",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Feature extraction turns images and text into vectors; heads are task specific.",
    "Ünïcödé text, with émojis 🙂 and accents.",
    "1 2 3 4 5",
    "What is the weather like tomorrow in Edinburgh, and should I bring an umbrella?",
    " ".join(["long"] * 300),
    "Short.",
    "Paris is the capital of France, and the Seine runs through it from east to west.",
    *[" ".join(["sentence", "of", "medium", "length", "about", "rivers"] * k) for k in (2, 5, 9)],
]
MIN_COSINE = 0.999


def photos() -> list[object]:
    from skimage import data

    return [getattr(data, name)() for name in PHOTOS]


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


@pytest.fixture(scope="module")
def lite0_head(lite0_checkpoint: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from hub_timm.converters import efficientnet_pytorch_to_timm

    state = efficientnet_pytorch_to_timm(torch.load(lite0_checkpoint, weights_only=True))
    return state["classifier.weight"], state["classifier.bias"]


@pytest.fixture(params=["auto", "bfloat16"])
def low(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The reduced-precision load: "auto" forced to bfloat16, or an explicit dtype="bfloat16"."""
    monkeypatch.setenv("HUB_DTYPE", "bfloat16")
    return str(request.param)


def test_efficientnet_lite0_stays_float32_under_auto_and_keeps_classes_in_bf16(
        monkeypatch: pytest.MonkeyPatch, lite0_head: tuple[torch.Tensor, torch.Tensor]) -> None:
    monkeypatch.setenv("HUB_DTYPE", "bfloat16")
    ref = hub.load("efficientnet_lite0", device="cpu", dtype="float32").extract(photos())
    auto = hub.load("efficientnet_lite0", device="cpu")  # depthwise convolutions: float32
    assert auto.auto and auto.precision == "float32"
    assert torch.equal(auto.extract(photos()).pooled, ref.pooled)
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="bfloat16")  # asked for: bf16
    got = bb.extract(photos())
    assert got.precision == "bfloat16" and got.pooled.dtype == torch.bfloat16
    cos = cosines(got.pooled, ref.pooled)
    # 0.9974 (colorwheel) to 0.9996 measured: why "auto" keeps such networks in float32
    assert cos.min().item() >= 0.995, dict(zip(PHOTOS, cos.tolist(), strict=True))
    weight, bias = lite0_head
    for feats in (ref, got):
        top = (feats.pooled.float() @ weight.T + bias).argmax(-1).tolist()
        for i, name in enumerate(PHOTOS):
            if name in CLASSES:
                assert top[i] in CLASSES[name], (name, top[i], feats.precision)


def test_minilm_bf16_keeps_sentence_embeddings(low: str) -> None:
    ref = hub.load("minilm_l6", device="cpu", dtype="float32")
    bb = hub.load("minilm_l6", device="cpu", dtype=low)
    with pytest.warns(UserWarning, match="truncated"):
        want = ref.extract(TEXTS, stages=[], batch_size=8)
    with pytest.warns(UserWarning, match="truncated"):
        got = bb.extract(TEXTS, stages=[], batch_size=8)
    assert got.precision == "bfloat16" and bb.module.embeddings.word_embeddings.weight.dtype == \
        torch.bfloat16
    cos = cosines(got.pooled, want.pooled)
    assert cos.min().item() >= MIN_COSINE, cos


def test_efficientnet_lite0_with_early_float32_islands_meets_the_bar(
        low: str, lite0_head: tuple[torch.Tensor, torch.Tensor]) -> None:
    ref = hub.load("efficientnet_lite0", device="cpu", dtype="float32").extract(photos())
    bb = hub.load("efficientnet_lite0", device="cpu", dtype=low, islands="early")
    assert bb.precision == "bfloat16" and bb.islands[0] == "conv_stem"
    assert bb.module.conv_stem.weight.dtype == torch.float32
    assert bb.module.conv_head.weight.dtype == torch.bfloat16
    assert "float32 islands" in repr(bb)
    got = bb.extract(photos())
    assert got.precision == "bfloat16"
    assert got.pooled.dtype == (torch.float32 if low == "auto" else torch.bfloat16)
    cos = cosines(got.pooled, ref.pooled)
    # 0.99942 (brick) measured, against 0.99737 for the whole network in bf16
    assert cos.min().item() >= MIN_COSINE, dict(zip(PHOTOS, cos.tolist(), strict=True))
    weight, bias = lite0_head
    top = (got.pooled.float() @ weight.T + bias).argmax(-1).tolist()
    for i, name in enumerate(PHOTOS):
        if name in CLASSES:
            assert top[i] in CLASSES[name], (name, top[i])


def test_islands_are_refused_where_they_mean_nothing_and_idle_in_float32() -> None:
    from hub.errors import InputError

    with pytest.raises(InputError, match="choose one of early, depthwise"):
        hub.load("efficientnet_lite0", device="cpu", islands="late")
    with pytest.raises(InputError, match="applies to image backbones"):
        hub.load("minilm_l6", device="cpu", islands="early")
    bb = hub.load("efficientnet_lite0", device="cpu", dtype="float32", islands="early")
    assert bb.islands == () and bb.precision == "float32"  # nothing is cast: nothing to keep
