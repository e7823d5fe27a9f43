"""hub.deps.require: one optional-import guard that names the extra."""

from __future__ import annotations

from pathlib import Path

import pytest

import hub.sdk
from hub.deps import require
from hub.errors import DependencyError


def test_require_returns_the_module() -> None:
    import json

    assert require("json", extra="dataset") is json


def test_a_missing_module_names_the_extra_and_the_purpose() -> None:
    with pytest.raises(DependencyError) as info:
        require("no_such_module_xyz.sub", extra="dataset", purpose="writing dataset features")
    assert str(info.value) == ("The package 'no_such_module_xyz' is not installed (needed for "
                               "writing dataset features). Run `pip install 'backbone-hub[dataset]'`.")
    assert info.value.package == "no_such_module_xyz" and isinstance(info.value, ImportError)


def test_the_distribution_name_and_no_extra() -> None:
    with pytest.raises(DependencyError, match=r"'scikit-learn' is not installed.*`pip install "
                                              r"scikit-learn`"):
        require("no_such_sklearn_xyz", package="scikit-learn", extra=None)


def test_plugin_authors_get_it_from_the_sdk() -> None:
    assert hub.sdk.require is require


def test_the_call_sites_name_their_extras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    import torch

    import hub
    from hub.plot import Point, tradeoff
    from hub.probe.scores import make_folds

    for module in ("timm", "matplotlib", "sklearn"):
        monkeypatch.setitem(sys.modules, module, None)  # "not installed": importing it fails
    spec = hub.get_catalog().get("resnet50").spec
    with pytest.raises(DependencyError, match=r"pip install 'backbone-hub\[timm\]'"):
        hub.get_registry().provider("timm").build(spec, None, device=torch.device("cpu"), dtype=None)
    with pytest.raises(DependencyError, match=r"pip install 'backbone-hub\[plot\]'"):
        tradeoff([Point("a", 1.0, 2.0, 3.0)], tmp_path / "p.svg", x_label="x", y_label="y",
                 title="t")
    with pytest.raises(DependencyError, match=r"'scikit-learn'.*pip install 'backbone-hub\[probe\]'"):
        make_folds(["a", "b"] * 3, 2, 0)
