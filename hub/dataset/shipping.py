"""Weights that travel to Ray workers: no shared ``HUB_CACHE``, no network on the workers.

The driver pulls and verifies the weights (:func:`hub.api.resolve`); :func:`pack` then puts the
bytes of that cache entry (``weights.safetensors``, the companion files, with the sha256 its
lock record holds) into Ray's object store once, and hands the references to every model
actor. An actor calls :func:`install` before it loads:

* its node's own cache (``HUB_CACHE`` of the node's environment, else the platform default)
  already holds a valid entry: nothing moves (a node image with ``hub pull`` baked in, a
  shared volume, or an earlier actor of the same node);
* else it takes the entry's lock, fetches each file from the object store (Ray moves objects
  between nodes itself), checks its sha256 against the driver's record, writes the entry in a
  staging folder and renames it into the node's cache (:meth:`hub.cache.Cache.commit`, the
  same path as a pull; its record's ``source`` says it was shipped, and from where). A file
  whose sha256 differs is refused (:class:`IntegrityError` naming it), and nothing enters the
  cache.

Then ``hub.load`` runs offline as before and checks the entry against its record again. A
saved directory (``net.save()``) is read in place and is not shipped: it must be on every
node at the same path.

A job with a runtime (``runtime="openvino"``) ships the driver's finished export the same way
(:func:`pack_export`, :func:`install_export`): its graph files with their sha256, its record,
into the same keyed folder of the node's cache (:mod:`hub.runtimes.store`); the actors then read
it instead of exporting again, and run exactly the driver's verified graph. A node whose key
differs (another torch or runtime version) finds no entry under its own key and exports itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub.errors import IntegrityError

__all__ = ["ShippedEntry", "ShippedExport", "install", "install_export", "pack", "pack_export"]


@dataclass(frozen=True)
class ShippedEntry:
    """One cache entry in transit.

    :param model: the catalogue name.
    :param variant: the weight variant.
    :param record: the driver's lock record (``lock.json``) as JSON data.
    :param files: path inside the entry -> (object reference, sha256 of its bytes).
    """

    model: str
    variant: str
    record: dict[str, Any]
    files: dict[str, tuple[Any, str]] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        """Bytes shipped (the record's sizes)."""
        rec = self.record
        return int(rec["weights"]["size"]) + sum(int(f["size"]) for f in rec["files"].values())


def pack(model: str, variant: str, put: Callable[[bytes], Any]) -> ShippedEntry | None:
    """The driver's cache entry of ``model``/``variant``, each file passed to ``put``
    (``ray.put``); ``None`` when the cache holds no valid entry (a saved directory).

    :raises IntegrityError: a file of the entry changed since it was verified.
    """
    from hub.cache import FILES_DIR, WEIGHTS_NAME, Cache
    from hub.config import get_settings

    cache = Cache(get_settings().cache_dir)
    rec = cache.read_record(model, variant)
    if rec is None:
        return None
    base = cache.entry_dir(model, variant)
    wanted = {WEIGHTS_NAME: rec.weights.sha256,
              **{f"{FILES_DIR}/{k}": v.sha256 for k, v in rec.files.items()}}
    files: dict[str, tuple[Any, str]] = {}
    for rel, sha in wanted.items():
        data = (base / rel).read_bytes()
        _check(model, f"the weight file {rel} in the driver's cache", data, sha, _REPULL.format(model=model))
        files[rel] = (put(data), sha)
    return ShippedEntry(model, variant, asdict(rec), files)


#: what to do when a weight file's bytes are not the driver's verified ones
_REPULL = "Run `hub verify {model}` on the driver (or `hub pull` again) and restart the job."


def _check(model: str, what: str, data: bytes, sha: str, remedy: str) -> None:
    """Refuse ``data`` unless its sha256 is ``sha``, the driver's (every shipped file, weights
    and runtime exports, is checked here).

    :raises IntegrityError: naming ``what`` (the file and where it is), both digests and
        ``remedy``.
    """
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise IntegrityError(f"{model}: {what} has sha256 {got}, but the driver's is {sha}; "
                             f"refused. {remedy}")


def install(entry: ShippedEntry, get: Callable[[Any], bytes]) -> bool:
    """Put a shipped entry into this node's cache unless a valid one is there; True when it
    was installed. ``get`` fetches an object (``ray.get``).

    :raises IntegrityError: a fetched file's sha256 is not the driver's (nothing is installed).
    """
    from hub.api import spec_of
    from hub.cache import Cache
    from hub.config import get_settings
    from hub.lockrecord import LockRecord
    from hub.weights import cached_weights

    spec = spec_of(entry.model)
    variant = next(v for v in spec.weights if v.name == entry.variant)
    if cached_weights(spec, variant) is not None:
        return False
    cache = Cache(get_settings().cache_dir)
    with cache.lock(entry.model, entry.variant):
        if cached_weights(spec, variant) is not None:  # another actor of this node was first
            return False
        with cache.staging() as stage:
            for rel, (ref, sha) in entry.files.items():
                data = get(ref)
                _check(entry.model, f"the weight file {rel} shipped to this node", data, sha,
                       _REPULL.format(model=entry.model))
                target = stage / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            record = LockRecord.from_json(entry.record)
            record.source = f"ray-object-store: shipped by the driver, from {record.source}"
            cache.commit(stage, record)
    return True


@dataclass(frozen=True)
class ShippedExport:
    """One runtime export (:mod:`hub.runtimes.store`) in transit, shipped like the weights.

    :param model: the catalogue name (for messages).
    :param path: the export's folder relative to the cache root
        (``runtimes/<runtime>/<model>/<variant>/<precision>-<key>``: the key names it, so a
        node whose torch or runtime version differs looks elsewhere and exports itself).
    :param record: the export's ``record.json`` as JSON data.
    :param files: file name inside the folder -> (object reference, sha256 of its bytes).
    """

    model: str
    path: str
    record: dict[str, Any]
    files: dict[str, tuple[Any, str]] = field(default_factory=dict)


def pack_export(model: str, folder: Path, put: Callable[[bytes], Any]) -> ShippedExport:
    """The driver's finished export in ``folder`` (under its cache root), each graph file passed
    to ``put`` (``ray.put``) with its sha256.

    :raises IntegrityError: the folder is not a finished export under the driver's cache.
    """
    from hub.config import get_settings
    from hub.runtimes.store import RECORD

    root = get_settings().cache_dir
    try:
        record: dict[str, Any] = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        rel = folder.relative_to(root).as_posix()
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{model}: the runtime export at {folder} has no readable {RECORD} "
                             f"under the cache {root} ({exc}); run the job again, which exports "
                             "it anew.") from exc
    files: dict[str, tuple[Any, str]] = {}
    for path in sorted(folder.iterdir()):
        if path.name != RECORD and path.is_file():
            data = path.read_bytes()
            files[path.name] = (put(data), hashlib.sha256(data).hexdigest())
    return ShippedExport(model, rel, record, files)


def install_export(export: ShippedExport, get: Callable[[Any], bytes]) -> bool:
    """Put a shipped export into this node's cache unless a finished one of the same key is
    there; True when it was installed. Each file is checked against the driver's sha256 in a
    staging folder, then the folder enters the cache by one rename
    (:func:`hub.runtimes.store.install`); its record's ``source`` says it was shipped.

    :raises IntegrityError: a fetched file's sha256 is not the driver's (nothing is installed).
    """
    import shutil

    from hub.config import get_settings
    from hub.runtimes import store

    root = get_settings().cache_dir
    folder = root / export.path
    key = export.record.get("key", {})
    if store.read_record(folder, key) is not None:
        return False
    staged = store.staging_dir(root)
    try:
        for name, (ref, sha) in export.files.items():
            data = get(ref)
            _check(export.model, f"the runtime export file {name} shipped to this node", data, sha,
                   f"Delete the driver's export (`hub cache rm`, {export.path}) and restart the job.")
            (staged / name).write_bytes(data)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    record = {**export.record, "source": "ray-object-store: shipped by the driver"}
    store.install(staged, folder, record)
    return True
