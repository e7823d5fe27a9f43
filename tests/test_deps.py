"""hub.deps.require: one optional-import guard that names the extra."""

from __future__ import annotations

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
