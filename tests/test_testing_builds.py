"""hub.testing.builds: the seeded conformance builds (their calibration, on real catalogue nets)."""

from __future__ import annotations

import torch

import hub
from hub.testing.builds import GROWTH_LIMIT, _calibrate, _randomize, sample_images


def _largest_activation(bb: hub.Backbone) -> float:
    """The largest |output| of any linear or convolution layer on the sample images."""
    largest = [0.0]

    def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        largest[0] = max(largest[0], float(out.abs().max()))

    layers = [m for m in bb.module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    handles = [m.register_forward_hook(hook) for m in layers]
    bb.extract(sample_images(), stages="all")
    for h in handles:
        h.remove()
    return largest[0]


def _seeded(name: str) -> hub.Backbone:
    torch.manual_seed(0)
    bb = hub.load(name, pretrained=False, device="cpu", dtype="float32")
    assert isinstance(bb, hub.Backbone)
    _randomize(bb.module, bb.spec)
    return bb


def test_a_network_that_grows_is_rescaled_to_unit_outputs() -> None:
    bb = _seeded("mobilenet_v3_small")
    with torch.no_grad():  # a fill that explodes: every convolution 8x too large
        for m in bb.module.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(8)
    assert _largest_activation(bb) > GROWTH_LIMIT
    assert _calibrate(bb)
    assert _largest_activation(bb) < 100


def test_a_network_of_order_one_keeps_its_fill() -> None:
    bb = _seeded("mobilenet_v3_small")
    before = {k: v.clone() for k, v in bb.module.state_dict().items()}
    assert _largest_activation(bb) <= GROWTH_LIMIT
    assert not _calibrate(bb)
    after = bb.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_text_entry_builds_at_the_depth_of_its_companion_config() -> None:
    from hub.testing.builds import _at_depth

    bert = hub.get_catalog().get("bert_base").spec
    shallow = _at_depth(bert, 2)
    assert shallow.outputs.num_layers == 2 and bert.outputs.num_layers == 12
    assert shallow.model_copy(update={"outputs": bert.outputs}) == bert  # nothing else changes
    # deeper than the manifest, no depth, or an entry with declared stages: left to the provider
    assert _at_depth(bert, 24) is bert and _at_depth(bert, None) is bert and _at_depth(bert, 0) is bert
    clip = hub.get_catalog().get("clip_vit_b32_hf").spec
    assert _at_depth(clip, 2) is clip
