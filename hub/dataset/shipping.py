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
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hub.errors import IntegrityError

__all__ = ["ShippedEntry", "install", "pack"]


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
        _check(model, rel, data, sha, where="in the driver's cache")
        files[rel] = (put(data), sha)
    return ShippedEntry(model, variant, asdict(rec), files)


def _check(model: str, rel: str, data: bytes, sha: str, *, where: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if sha and got != sha:
        raise IntegrityError(f"{model}: the weight file {rel} {where} has sha256 {got}, but the "
                             f"driver verified {sha}; refused. Run `hub verify {model}` on the "
                             "driver (or `hub pull` again) and restart the job.")


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
                _check(entry.model, rel, data, sha, where="shipped to this node")
                target = stage / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            record = LockRecord.from_json(entry.record)
            record.source = f"ray-object-store: shipped by the driver, from {record.source}"
            cache.commit(stage, record)
    return True
