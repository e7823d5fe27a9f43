"""Where exported runtime graphs live, keyed so that a stale one is never used.

Layout under the cache root (``HUB_CACHE``), next to ``models/``::

    <root>/
      runtimes/<runtime>/<model>/<variant>/<precision>-<key>/
        model.xml, model.bin           the exported graph (the runtime's own data format)
        record.json                    the key's fields, the layout of the outputs, the
                                       verification against float32 torch
      tmp/runtime-<host>-<pid>-<id>/   staging (swept like every other leftover)

``<key>`` is the first 16 hex digits of the sha256 of :func:`key_fields`: the weights'
sha256, the architecture and its stages, the input shape, the precision, and the
versions of the runtime and of torch. Anything that changes the graph changes the key;
an entry is written whole in ``tmp/`` and renamed into place, so a reader sees either
nothing or a finished, verified export. Backbones built without pretrained weights
(random) are never cached: their weights differ at each build.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.atomic import replace_dir, write_atomic
from hub.errors import CacheError, OutputError
from hub.leftovers import owned_name

if TYPE_CHECKING:
    from hub.backbone import Backbone

__all__ = ["RECORD", "Export", "entry_dir", "install", "key_fields", "read_record", "remove",
           "scan", "staging_dir"]

RECORD = "record.json"
#: bumped when the exported layout or record changes meaning
FORMAT = 1


def key_fields(bb: Backbone, *, runtime: str, runtime_version: str, precision: str,
               input_shape: list[int]) -> dict[str, Any]:
    """Everything an export depends on; its hash names the cache entry.

    :param input_shape: the model input's shape with ``-1`` for its dynamic dimensions.
    """
    import torch

    spec = bb.spec
    return {"format": FORMAT, "runtime": runtime, "runtime_version": runtime_version,
            "torch": torch.__version__, "precision": precision, "model": spec.name,
            "provider": spec.provider, "architecture": spec.architecture,
            "variant": bb.weights.variant.name if bb.weights else None,
            "weights_sha256": bb.weights.sha256 if bb.weights else None,
            "stages": [[s.name, s.module] for s in spec.outputs.stages],
            "input_shape": input_shape}


def entry_dir(root: Path, fields: dict[str, Any]) -> Path:
    """The cache folder of one export."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    parts = [str(fields[k]) for k in ("runtime", "model", "variant")]
    return root.joinpath("runtimes", *parts, f"{fields['precision']}-{digest}")


def read_record(folder: Path, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished export whose key fields are ``fields``, else ``None``."""
    try:
        record: dict[str, Any] = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("key") == fields else None


def staging_dir(root: Path) -> Path:
    """A new, empty folder under ``<root>/tmp`` owned by this process."""
    path = root / "tmp" / owned_name("runtime")
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise CacheError(f"Cannot write the runtime export at {path} ({exc.strerror}). Point "
                         "HUB_CACHE at a writable folder.") from exc
    return path


def install(staged: Path, folder: Path, record: dict[str, Any]) -> None:
    """Write ``record`` into ``staged`` and move it to ``folder`` by one rename
    (:func:`hub.atomic.replace_dir`). When another process finished the same export first (a
    readable record of the same key is in place), its entry is kept and ``staged`` removed; a
    damaged or stale entry of the same key is replaced.

    :raises CacheError: the entry cannot be written; the cache is as it was.
    """
    try:
        write_atomic(staged / RECORD, json.dumps(record, indent=1, sort_keys=True))
        folder.parent.mkdir(parents=True, exist_ok=True)
        if read_record(folder, record.get("key", {})) is not None:
            shutil.rmtree(staged, ignore_errors=True)  # a concurrent export of the same key won
            return
        replace_dir(staged, folder, staged.with_name(owned_name("runtime-replaced")))
    except (OSError, OutputError) as exc:
        shutil.rmtree(staged, ignore_errors=True)
        if read_record(folder, record.get("key", {})) is not None:
            return  # a concurrent export of the same key won the rename
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CacheError(f"Cannot store the runtime export at {folder} ({why}). Point "
                         "HUB_CACHE at a writable folder.") from exc


@dataclass(frozen=True)
class Export:
    """One cached export, as found on disk (what ``hub cache ls`` lists).

    :param key: the record's key fields (:func:`key_fields`), ``None`` when the record is
        missing or unreadable (an entry being replaced, or damaged).
    :param size: bytes of its files.
    :param made: when it was written (the record's modification time), else ``None``.
    """

    runtime: str
    model: str
    variant: str
    precision: str
    path: Path
    size: int
    key: dict[str, Any] | None
    made: float | None

    @property
    def label(self) -> str:
        """``runtime/model/variant/folder``: how ``hub cache`` names it."""
        return f"{self.runtime}/{self.model}/{self.variant}/{self.path.name}"


def scan(root: Path) -> list[Export]:
    """Every export folder under ``<root>/runtimes/``, sorted by path (reads only records)."""
    from hub.cache import tree_size

    base = root / "runtimes"
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(base.glob("*/*/*/*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        runtime, model, variant = folder.parts[-4:-1]
        try:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
            key = record["key"] if isinstance(record.get("key"), dict) else None
            made: float | None = (folder / RECORD).stat().st_mtime
        except (OSError, ValueError, AttributeError):
            key, made = None, None
        out.append(Export(runtime, model, variant, folder.name.split("-", 1)[0], folder,
                          tree_size(folder), key, made))
    return out


def remove(root: Path, folder: Path) -> None:
    """Delete one export folder, then its model and variant folders if they are left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    base = root / "runtimes"
    parent = folder.parent
    while parent != base and parent.is_relative_to(base):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
