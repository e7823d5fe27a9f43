"""hub.probe.features: the features cache (key, atomic pair of files, misses on damage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hub
from hub.dataset.items import ItemError
from hub.errors import CacheError
from hub.probe.features import FeatureSet, feature_key, features_dir, load_features, store_features
from hub.provider import WeightFiles


def _key(**change: str) -> str:
    spec = hub.get_catalog().get("efficientnet_lite0").spec
    assert spec.default_variant is not None
    files = WeightFiles(spec.default_variant, Path("w.safetensors"),
                        change.get("sha256", "ab" * 32))
    return feature_key(spec, files, precision=change.get("precision", "float32"),
                       items=change.get("items", "cd" * 32))[0]


def test_the_key_changes_with_weights_precision_and_items_only() -> None:
    base = _key()
    assert base == _key() and len(base) == 64
    assert len({base, _key(sha256="ef" * 32), _key(precision="bfloat16"), _key(items="00" * 32)}) == 4


def test_store_then_load_gives_the_same_features_and_leaves_no_temporary_files(cache_dir: Path) -> None:
    fs = FeatureSet(np.arange(12, dtype=np.float32).reshape(3, 4), [0, 2, 3],
                    [ItemError(1, "a/b.png", "cannot decode image")])
    meta = store_features("k" * 64, {"name": "x"}, fs)
    assert meta == cache_dir / "features" / ("k" * 64 + ".json")
    assert sorted(p.name for p in features_dir().iterdir()) == ["k" * 64 + ".json", "k" * 64 + ".npy"]
    back = load_features("k" * 64)
    assert back is not None and back.cached and not fs.cached
    assert np.array_equal(back.features, fs.features) and back.features.dtype == np.float32
    assert back.indices == [0, 2, 3] and back.errors == fs.errors


def test_a_missing_half_or_damaged_or_inconsistent_pair_is_a_miss(cache_dir: Path) -> None:
    assert load_features("0" * 64) is None
    fs = FeatureSet(np.ones((2, 3), np.float32), [0, 1])
    store_features("1" * 64, {}, fs)
    (features_dir() / ("1" * 64 + ".json")).unlink()  # killed between the two renames
    assert load_features("1" * 64) is None
    store_features("2" * 64, {}, fs)
    (features_dir() / ("2" * 64 + ".npy")).write_bytes(b"\x93NUMPY garbage")
    assert load_features("2" * 64) is None
    store_features("3" * 64, {}, fs)
    (features_dir() / ("3" * 64 + ".json")).write_text('{"indices": [0, 1, 2]}')
    assert load_features("3" * 64) is None


def test_an_unwritable_cache_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HUB_CACHE", str(blocker))
    with pytest.raises(CacheError, match=r"cannot write features .* HUB_CACHE"):
        store_features("4" * 64, {}, FeatureSet(np.ones((1, 1), np.float32), [0]))
