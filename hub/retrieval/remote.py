"""A dataset output in an object store (``s3://bucket/feats/``), searched through a local copy.

``hub search s3://bucket/feats/ QUERY`` (``hub.search``, ``hub.open_index``) copies the output's
``_manifest.json`` and the shards it lists into ``<cache>/search/<key>/`` (``key``: the first 16
hex digits of the URI's sha256), each shard checked against the manifest's sha256 and fetched
again only when it changed, then searches that folder as any local output (its
``_search.arrow`` lives there). Shards the manifest no longer lists are deleted from the copy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hub.errors import SearchIndexError

__all__ = ["local_copy"]


def local_copy(uri: str) -> Path:
    """The up-to-date local copy of the output at ``uri``.

    :raises SearchIndexError: no ``_manifest.json`` at ``uri``, or a shard whose bytes do not
        match the manifest.
    :raises StoreError: the store kept failing (names the object).
    """
    from hub.atomic import write_atomic
    from hub.cache import sha256_file
    from hub.config import get_settings
    from hub.dataset import store
    from hub.dataset.writer import MANIFEST

    base = uri.rstrip("/")
    folder = get_settings().cache_dir / "search" / hashlib.sha256(base.encode()).hexdigest()[:16]
    try:
        raw = store.read_bytes(store.join(base, MANIFEST))
    except FileNotFoundError as exc:
        raise SearchIndexError(f"{uri!r} is not a dataset output (no {MANIFEST}). Make one with "
                               f"`hub extract NAME SOURCE --out {uri}`.") from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise SearchIndexError(f"{store.join(base, MANIFEST)} is not valid JSON ({exc}). Run the "
                               "same `hub extract` again to rewrite it.") from exc
    folder.mkdir(parents=True, exist_ok=True)
    listed = set()
    for entry in manifest.get("shards", []) if isinstance(manifest, dict) else []:
        name = str(entry["file"])
        listed.add(name)
        target = folder / name
        if target.is_file() and sha256_file(target) == entry.get("sha256"):
            continue
        data = store.read_bytes(store.join(base, name))
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise SearchIndexError(f"{store.join(base, name)} does not match the sha256 its "
                                   "manifest records. Run the same `hub extract` again.")
        write_atomic(target, data, make_parent=False)
    for stale in folder.glob("part-*.parquet"):
        if stale.name not in listed:
            stale.unlink()
    write_atomic(folder / MANIFEST, raw, make_parent=False)
    return folder
