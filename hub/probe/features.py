"""Pooled features of a labelled source, extracted once per backbone and content.

Layout under the cache root (``HUB_CACHE``), next to ``models/``::

    <root>/features/<key>.npy     (n, D) float32: the pooled embedding of each readable row
    <root>/features/<key>.json    what the key stands for, the row of each feature, the rows
                                  that gave none and why

``key`` is the sha256 of the backbone (name, provider, architecture), its weights (variant
and the sha256 of the verified file), the precision it computes in, its pooling,
normalisation and preprocessing, and the :func:`~hub.probe.fingerprint.items_digest` of the
source. The device is left out: CPU and CUDA features differ by float rounding, far below
what moves a probe's accuracy. Each file is written to a temporary name and renamed; the
``.npy`` first, the ``.json`` last, so a ``.json`` means a complete pair, and a reader
accepts the pair only when the row counts agree (anything else is a miss and is rewritten).
A hit loads no model and runs no forward pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.atomic import write_atomic
from hub.config import get_settings
from hub.dataset.items import ItemError
from hub.errors import CacheError

if TYPE_CHECKING:
    from hub.dataset.readers import Reader
    from hub.manifest import BackboneSpec
    from hub.provider import WeightFiles

__all__ = ["FeatureSet", "feature_key", "features_dir", "load_features", "store_features"]

log = logging.getLogger("hub.probe")

FORMAT = 1


@dataclass
class FeatureSet:
    """The features of one backbone on one source.

    :param features: (n, D) float32 array, one row per readable source row.
    :param indices: the source row of each feature row, ascending.
    :param errors: the source rows that gave no features, and why.
    :param cached: whether they came from the cache (no model was loaded).
    """

    features: Any
    indices: list[int]
    errors: list[ItemError] = field(default_factory=list)
    cached: bool = False


def features_dir(cache_dir: Path | None = None) -> Path:
    """``<cache root>/features``."""
    return (cache_dir or get_settings().cache_dir) / "features"


def feature_key(spec: BackboneSpec, files: WeightFiles, *, precision: str,
                items: str) -> tuple[str, dict[str, Any]]:
    """The cache key of a backbone's features of a source, and what it stands for."""
    what = {"format": FORMAT, "name": spec.name, "provider": spec.provider,
            "architecture": spec.architecture, "variant": files.variant.name,
            "weights_sha256": files.sha256, "precision": precision, "pool": spec.outputs.pool,
            "normalize": spec.outputs.normalize,
            "preprocessing": spec.preprocessing.model_dump(mode="json"), "items": items}
    text = json.dumps(what, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), what


def load_features(key: str, cache_dir: Path | None = None) -> FeatureSet | None:
    """The cached features of ``key``, or ``None`` (a miss, or an incomplete or damaged pair)."""
    import numpy as np

    base = features_dir(cache_dir) / key
    try:
        meta = json.loads(base.with_suffix(".json").read_text())
        features = np.load(base.with_suffix(".npy"), allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring damaged cached features %s (%s); extracting again", base, exc)
        return None
    indices = meta.get("indices") if isinstance(meta, dict) else None
    if not isinstance(indices, list) or features.ndim != 2 or len(features) != len(indices):
        log.warning("ignoring inconsistent cached features %s; extracting again", base)
        return None
    errors = [ItemError(e["index"], e["id"], e["reason"]) for e in meta.get("errors", [])]
    return FeatureSet(features, [int(i) for i in indices], errors, cached=True)


def store_features(key: str, what: dict[str, Any], fs: FeatureSet,
                   cache_dir: Path | None = None) -> Path:
    """Write ``fs`` under ``key`` (``.npy`` then ``.json``, each by one rename).

    :returns: the ``.json`` file.
    :raises CacheError: the cache cannot be written.
    """
    import numpy as np

    folder = features_dir(cache_dir)
    base = folder / key
    meta = {**what, "rows": len(fs.indices), "indices": fs.indices,
            "errors": [e.to_json() for e in fs.errors]}
    array = np.ascontiguousarray(fs.features, dtype=np.float32)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # np.save on a path would append ".npy" to the temporary name
            np.save(fh, array, allow_pickle=False)

    try:
        write_atomic(base.with_suffix(".npy"), save)
        write_atomic(base.with_suffix(".json"), json.dumps(meta))
    except OSError as exc:
        raise CacheError(f"cannot write features to {folder} ({exc}). Check that HUB_CACHE is "
                         "writable and has room.") from exc
    return base.with_suffix(".json")


def extract_features(load: Callable[[], Any], reader: Reader, *, batch_size: int,
                     workers: int | None) -> FeatureSet:
    """Run the backbone ``load()`` returns over every row of ``reader``: a fresh :class:`FeatureSet`.

    Rows that cannot be read or decoded are logged and kept as errors; the rest goes on.
    """
    import numpy as np

    from hub.dataset.api import iter_features

    bb = load()
    chunks: list[Any] = []
    indices: list[int] = []
    errors: list[ItemError] = []
    for fb in iter_features(bb, reader, batch_size=batch_size, workers=workers):
        chunks.append(fb.embedding)
        indices += fb.indices
        errors += fb.errors
        for e in fb.errors:
            log.warning("skipping %s (row %d): %s", e.id, e.index, e.reason)
    features = np.concatenate(chunks) if chunks else np.zeros((0, bb.embedding_dim), np.float32)
    return FeatureSet(features.astype(np.float32, copy=False), indices, errors, cached=False)
