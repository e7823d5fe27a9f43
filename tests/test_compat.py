"""hub.compat: retired names keep working, each with a DeprecationWarning at the caller's line.

The attributes (``Backbone.specs`` -> ``stage_specs``, ``Backbone.dtype`` -> ``feature_dtype``,
``Features.specs`` -> ``stage_specs``) on a real backbone (the example plugin's tinynet, real
weights); the provider protocol's old method names on real subclasses of its class, run through
``extract()``. pyproject's filterwarnings turns these warnings into errors everywhere else, so
nothing in hub, its plugins or its tests still uses an old name.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import hub
from hub.backbone import Backbone, ImageBackbone, RawOutput, TextBackbone
from hub.compat import RENAMED_METHODS
from hub.errors import InputError, PluginError, ProtocolError
from hub.features import Features


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return hub.load("example_tinynet", device="cpu", dtype="float32")


def _images(n: int) -> list[Any]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(n)]


def _one_warning(caught: list[warnings.WarningMessage]) -> warnings.WarningMessage:
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert ours[0].filename == __file__  # stacklevel: it points at the caller, here
    return ours[0]


# ---- renamed attributes -------------------------------------------------------------------------
def test_backbone_specs_warns_and_is_stage_specs(tiny: Backbone) -> None:
    assert list(tiny.stage_specs) == ["s1", "s2", "s3"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = tiny.specs
    w = _one_warning(caught)
    assert str(w.message) == ("TinyNetBackbone.specs was renamed: use stage_specs; specs will be "
                              "removed.")
    assert old is tiny.stage_specs


def test_backbone_dtype_warns_and_is_feature_dtype(tiny: Backbone) -> None:
    half = tiny.configure(dataclasses.replace(tiny.plan, features="bfloat16"))
    try:
        assert half.feature_dtype == torch.bfloat16 and half.weight_dtype is None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = half.dtype
        assert "dtype was renamed: use feature_dtype; dtype will be removed" in str(
            _one_warning(caught).message)
        assert old == torch.bfloat16
        # what the attribute promises: the features come out in it
        assert half.extract(_images(1), stages=[]).pooled.dtype == torch.bfloat16
    finally:
        tiny.configure(dataclasses.replace(tiny.plan, features="float32"))
    assert tiny.extract(_images(1), stages=[]).pooled.dtype == torch.float32


def test_features_specs_warns_and_is_stage_specs(tiny: Backbone) -> None:
    f = tiny.extract(_images(2), stages="s2")
    assert list(f.stage_specs) == ["s2"] and f.stage_specs["s2"] is tiny.stage_specs["s2"]
    with pytest.deprecated_call(match="Features.specs was renamed: use stage_specs"):
        old = f.specs
    assert old is f.stage_specs
    assert f.to("cpu").stage_specs == f.stage_specs  # the copy keeps them under the new name


def test_trainable_net_specs_warns_and_is_stage_specs() -> None:
    """``as_module()``'s net (and a pyramid over it) took ``specs`` for what the backbone and its
    features call ``stage_specs``."""
    import hub

    bb = hub.load("vit_s16", pretrained=False, device="cpu", dtype="float32")
    net = bb.as_module(stages=[-1])
    assert [s.name for s in net.stage_specs] == net.stage_names and net.strides == [16]
    with pytest.deprecated_call(match="Trunk.specs was renamed: use stage_specs"):
        old = net.specs
    assert old is net.stage_specs
    pyramid = bb.as_module(stages=[-1], pyramid=True)
    assert [s.stride for s in pyramid.stage_specs] == [4, 8, 16, 32]
    with pytest.deprecated_call(match="PyramidNet.specs was renamed: use stage_specs"):
        assert pyramid.specs is pyramid.stage_specs


def test_writing_an_old_name_writes_the_new_one_and_warns() -> None:
    f = Features(pooled=None)
    with pytest.deprecated_call(match="use stage_specs"):
        f.specs = {"x": None}
    assert f.stage_specs == {"x": None}


def test_the_new_names_do_not_warn(tiny: Backbone) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tiny.feature_dtype is None and len(tiny.stage_specs) == 3
        assert list(tiny.extract(_images(1), stages="all").stage_specs) == ["s1", "s2", "s3"]


# ---- the provider protocol's old method names ---------------------------------------------------
@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_METHODS.items()))
def test_each_old_method_name_is_bound_to_its_new_name(old: str, new: str) -> None:
    base = TextBackbone if old == "_tokenize" else ImageBackbone

    def method(self: Any, *args: Any) -> Any:
        return None

    with pytest.deprecated_call() as record:
        cls = type("OldStyle", (base,), {old: method, "__module__": __name__})
    assert vars(cls)[new] is method and getattr(cls, old) is method
    messages = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert messages == [f"{__name__}.OldStyle overrides {old}, the provider protocol's old name of "
                        f"{new}; hub calls it as {new} for now. Rename the method to {new}: {old} "
                        "will be removed."]


def test_an_old_style_subclass_runs_its_old_methods_through_extract(tiny: Backbone) -> None:
    base = type(tiny)
    calls: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Doubled(base):  # type: ignore[valid-type,misc]  # a plugin written before 78cfa26
            def _forward(self, batch: Any, stages: list[str]) -> RawOutput:
                calls.append("_forward")
                raw = base.forward(self, batch, stages)
                return RawOutput(stages={k: 2 * v for k, v in raw.stages.items()})

            def _items(self, inputs: Any) -> list[Any]:
                calls.append("_items")
                return base.check_inputs(self, inputs)

    assert len(caught) == 2 and all(w.category is DeprecationWarning for w in caught)
    assert all(w.filename == __file__ for w in caught)  # at the class statement
    assert {str(w.message).split(" overrides ")[1].split(",")[0] for w in caught} == {"_forward",
                                                                                      "_items"}
    assert all(f"{__name__}.{Doubled.__qualname__} overrides" in str(w.message) for w in caught)

    old = Doubled(tiny.spec, tiny.module, list(tiny.stage_specs.values()), weights=tiny.weights,
                  device=tiny.device, dtype=None)
    x = _images(3)
    got = old.extract(x, stages="all", normalize=False)
    want = tiny.extract(x, stages="all", normalize=False)
    assert calls == ["_items", "_forward"]  # one batch: the old methods ran, not the base's
    for name in want.stages:
        torch.testing.assert_close(got.stages[name], 2 * want.stages[name])
    torch.testing.assert_close(got.pooled, 2 * want.pooled)  # avg pooling is linear


def test_a_subclass_of_an_old_style_class_inherits_the_binding_silently() -> None:
    with pytest.deprecated_call():
        class Old(ImageBackbone):
            def _forward(self, batch: Any, stages: list[str]) -> RawOutput:
                return RawOutput(stages={"s": batch})

    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class Child(Old):
            pass

    assert Child.forward is Old.__dict__["_forward"] and not Child.__abstractmethods__


def test_defining_both_names_is_refused_and_says_what_to_do() -> None:
    with pytest.raises(ProtocolError) as info:
        class Both(ImageBackbone):
            def _forward(self, batch: Any, stages: list[str]) -> RawOutput:
                return RawOutput(stages={})

            def forward(self, batch: Any, stages: list[str]) -> RawOutput:
                return RawOutput(stages={})

    assert isinstance(info.value, PluginError) and isinstance(info.value, TypeError)
    assert not isinstance(info.value, InputError)
    assert str(info.value) == (
        f"{__name__}.test_defining_both_names_is_refused_and_says_what_to_do.<locals>.Both "
        "defines both _forward and forward; hub calls forward only (renamed from _forward in "
        "backbone-hub's provider protocol). Keep the body in forward and delete _forward.")


def test_no_class_in_hub_or_its_plugins_defines_an_old_name() -> None:
    for module in ("hub_open_clip.provider", "hub_timm.provider", "hub_torchvision.provider",
                   "hub_transformers.provider", "hub_transformers.twotower"):
        importlib.import_module(module)  # every built-in Backbone class exists

    def every(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from every(sub)

    ours = {c.__qualname__: c for c in every(Backbone)
            if c.__module__.split(".")[0] in {"hub", "hub_timm", "hub_transformers", "hub_open_clip",
                                               "hub_torchvision", "hub_plugin_example"}}
    assert {"ImageBackbone", "TextBackbone", "FixedLengthText", "TimmBackbone", "TorchvisionBackbone",
            "TransformersBackbone", "TransformersImage", "TransformersText", "OpenClipImage",
            "OpenClipText"} <= set(ours)
    assert not [(name, old) for name, c in ours.items() for old in RENAMED_METHODS if old in vars(c)]
