"""hub.twotower: an image-text backbone HOLDS two ordinary backbones (composition); nothing of
Backbone's contract is disabled; the types hub.load returns are exported from hub."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch

import hub
from hub.backbone import Backbone, ImageBackbone, TextBackbone
from hub.errors import InputError
from hub.twotower import TwoTowerBackbone, ZeroShot

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def clip() -> TwoTowerBackbone:
    bb = hub.load("clip_vit_b32", pretrained=False, device="cpu", dtype="float32")
    assert isinstance(bb, TwoTowerBackbone)
    return bb


def test_the_image_text_backbone_holds_two_ordinary_backbones(clip: TwoTowerBackbone) -> None:
    assert not isinstance(clip, Backbone) and Backbone not in TwoTowerBackbone.__mro__
    assert isinstance(clip.image, ImageBackbone) and isinstance(clip.text, TextBackbone)
    assert clip.image.two_tower is clip and clip.text.two_tower is clip
    assert clip.tower("image") is clip.image and clip.tower("text") is clip.text
    with pytest.raises(InputError, match="modality must be 'image' or 'text', got 'audio'"):
        clip.tower("audio")
    # nothing inherited and disabled: no forward, no batches, no specs setter of its own
    for name in ("forward", "batches", "check_inputs", "finish"):
        assert not hasattr(clip, name), name
    assert clip.stage_specs == {**clip.image.stage_specs, **clip.text.stage_specs}
    with pytest.raises(AttributeError):
        clip.stage_specs = {}  # type: ignore[misc]  # read-only: the towers own their stages


def test_extract_picks_the_tower_and_runs_it_unchanged(clip: TwoTowerBackbone) -> None:
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    got = clip.extract(x, stages=[])
    assert torch.equal(got.pooled, clip.image.extract(x, stages=[]).pooled)
    texts = ["a cat", "two dogs"]
    assert torch.equal(clip.extract(texts).pooled, clip.text.extract(texts).pooled)
    assert torch.equal(clip.extract(["a.jpg"], modality="text").pooled,
                       clip.text.extract(["a.jpg"]).pooled)  # modality= wins over the guess
    z = clip.zero_shot(x, ["cat", "dog"], ["a {}"])
    assert isinstance(z, ZeroShot) and z.probs.shape == (2, 2)
    torch.testing.assert_close(z.probs.sum(-1), torch.ones(2))


def test_the_plan_reaches_both_towers(clip: TwoTowerBackbone) -> None:
    assert clip.plan.modality == "image-text" and clip.precision == "float32"
    assert clip.image.plan == clip.plan.for_tower("image")
    assert clip.text.plan == clip.plan.for_tower("text")
    assert clip.provider is not None and clip.image.provider is clip.provider
    assert "TwoTowerBackbone clip_vit_b32" in repr(clip) and "towers=image,text" in repr(clip)


def test_the_old_names_warn_and_read_the_new_ones(clip: TwoTowerBackbone) -> None:
    # hub.compat: specs -> stage_specs, dtype -> feature_dtype, on the holder as on its towers
    with pytest.deprecated_call(match="TwoTowerBackbone.specs was renamed: use stage_specs"):
        assert clip.specs == clip.stage_specs
    with pytest.deprecated_call(match="TwoTowerBackbone.dtype was renamed: use feature_dtype"):
        assert clip.dtype is clip.feature_dtype is None
    for tower in (clip.image, clip.text):
        with pytest.deprecated_call(match="specs was renamed: use stage_specs"):
            assert tower.specs is tower.stage_specs


def test_the_types_hub_load_returns_are_exported() -> None:
    for name in ("Backbone", "ImageBackbone", "TextBackbone", "TwoTowerBackbone", "ZeroShot",
                 "Features"):
        assert name in hub.__all__ and getattr(hub, name) is not None, name
    assert hub.TwoTowerBackbone is TwoTowerBackbone and hub.ZeroShot is ZeroShot
    hints = inspect.signature(hub.load).return_annotation
    assert "AnyBackbone" in str(hints)


def test_backbone_does_not_import_the_api() -> None:
    """The provider comes with the build (Backbone.configure(provider=...)): hub/backbone.py
    never reaches back into hub.api's registry."""
    tree = ast.parse(Path(inspect.getfile(Backbone)).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "hub.api" not in imported and "hub" not in imported


def test_hub_load_hands_the_provider_to_the_backbone() -> None:
    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    assert bb.provider is hub.get_registry().provider(bb.spec.provider)
