"""Saved directories: one manifest and the files beside it, loaded in place.

A saved directory (written by :func:`hub.train.save.save_finetuned`, or by hand)::

    DIRECTORY/
      manifest.yaml          one backbone entry, the same schema as the zoo's (hub.manifest)
      model.safetensors      its weights: a ``saved`` source, relative to the manifest's folder
      config.json, ...       companion files (text backbones), relative to the weights' folder

``hub.load(DIRECTORY)`` (or the manifest file's path) reads the manifest with the same safe
loader and schema as every manifest, then checks the files where they lie -- they are never
copied into the cache:

* the variant must have a ``saved`` source, be ``safetensors`` (a pickle is refused unread) and
  pin the sha256 of the weights and of every companion file;
* every file must stay inside the manifest's folder once symlinks are resolved;
* the weights' sha256 is computed and compared before anything reads them as tensors, on every
  load; within one process the hash is remembered while the file's device, inode, size and
  modification time stay the same (:func:`hub.cache.sha256_known`, as a cache entry is re-hashed
  once per process), so loading one directory twice hashes it once;
* the weights pass the same safetensors structure checks as any download
  (:func:`hub.convert.validate_safetensors`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.cache import sha256_known
from hub.convert import validate_safetensors
from hub.errors import IntegrityError, ManifestError, SourceUnavailableError, UnsafeWeightsError
from hub.manifest import BackboneSpec, SavedSource, WeightVariant
from hub.manifest_loader import load_manifest_file
from hub.provider import WeightFiles

__all__ = ["MANIFEST_NAME", "SavedEntry", "manifest_path", "read_entry", "saved_info",
           "saved_weights"]

#: the manifest file of a saved directory
MANIFEST_NAME = "manifest.yaml"
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SavedEntry:
    """A saved directory's backbone: declared by a manifest outside any catalogue.

    :param spec: the validated entry.
    :param manifest: the manifest file (absolute); its folder is the root of every local path.
    """

    spec: BackboneSpec
    manifest: Path

    @property
    def root(self) -> Path:
        return self.manifest.parent


def manifest_path(target: str | os.PathLike[str]) -> Path | None:
    """The manifest a path names, or ``None`` when ``target`` is no existing file or directory.

    :param target: a saved directory (its ``manifest.yaml`` is read) or a ``.yaml``/``.yml`` file.
    :raises ManifestError: a directory without ``manifest.yaml``, or a file that is no YAML.
    """
    p = Path(target).expanduser()
    if p.is_dir():
        m = p / MANIFEST_NAME
        if not m.is_file():
            raise ManifestError(f"{p} is a directory without {MANIFEST_NAME}, so it is not a saved "
                                "backbone. Pass a directory written by net.save() (or a backbone "
                                "name from `hub list`).", path=str(m))
        return m.resolve()
    if p.is_file():
        if p.suffix.lower() not in _SUFFIXES:
            raise ManifestError(f"{p} is not a manifest (.yaml): pass the saved directory or its "
                                f"{MANIFEST_NAME}.", path=str(p))
        return p.resolve()
    return None


def read_entry(manifest: Path) -> SavedEntry:
    """Read a saved directory's manifest: safe YAML, the full schema, exactly one backbone.

    :raises ManifestError: naming the file, the model and the field.
    """
    specs = load_manifest_file(manifest)
    if len(specs) != 1:
        raise ManifestError(f"{manifest}: a saved directory's manifest declares one backbone, this "
                            f"one declares {len(specs)} ({', '.join(s.name for s in specs)}).",
                            path=str(manifest))
    return SavedEntry(spec=specs[0], manifest=Path(manifest).resolve())


def _source(entry: SavedEntry, variant: WeightVariant) -> SavedSource:
    src = next((s for s in variant.sources if isinstance(s, SavedSource)), None)
    if src is None:
        raise ManifestError(f"{entry.manifest}: model {entry.spec.name!r}, variant {variant.name!r} "
                            "has no 'saved' source: a saved directory's weights are files beside "
                            "its manifest ({type: saved, file: model.safetensors}).",
                            path=str(entry.manifest), model=entry.spec.name, field="weights.sources")
    if variant.format != "safetensors":
        raise UnsafeWeightsError(f"{entry.manifest}: variant {variant.name!r} is {variant.format}; a "
                                 "saved directory is loaded from safetensors only (nothing from it "
                                 "is unpickled). Save the weights with safetensors.")
    unpinned = ([] if variant.sha256 else [src.file]) + [f.path for f in variant.files
                                                         if f.sha256 is None]
    if unpinned:
        raise IntegrityError(f"{entry.manifest}: variant {variant.name!r} pins no sha256 for "
                             f"{', '.join(unpinned)}; every file of a saved directory must be "
                             "pinned (net.save() pins them). Add the sha256 of each file.")
    return src


def _inside(entry: SavedEntry, rel: Path, what: str) -> Path:
    """``root / rel`` after checking that it is a regular file that stays inside the root."""
    path = entry.root / rel
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        raise SourceUnavailableError(f"{entry.manifest}: the {what} {rel} is missing from the saved "
                                     "directory. Copy the whole directory, not only its "
                                     "manifest.") from exc
    if not real.is_relative_to(entry.root.resolve()):
        raise UnsafeWeightsError(f"{entry.manifest}: the {what} {rel} resolves to {real}, outside "
                                 "the saved directory (a symlink?). Refused: a saved directory "
                                 "reads only its own files.")
    if not real.is_file():
        raise UnsafeWeightsError(f"{entry.manifest}: the {what} {rel} is not a regular file.")
    return path


def _check_hash(entry: SavedEntry, path: Path, expected: str | None, what: str) -> str:
    got = sha256_known(path)
    if got != expected:
        raise IntegrityError(f"{entry.manifest}: the {what} {path.name} has sha256 {got}, but the "
                             f"manifest pins {expected}. The file changed (or the manifest was "
                             "edited) since it was saved; refused. Save it again or restore the "
                             "file.")
    return got


def saved_weights(entry: SavedEntry, variant: WeightVariant) -> WeightFiles:
    """Verify a saved directory's files in place and return them (nothing is copied).

    :raises ManifestError: the variant has no saved source.
    :raises UnsafeWeightsError: pickle weights, a file outside the directory, malformed safetensors.
    :raises IntegrityError: a file is unpinned, or its sha256 or size differs from the manifest.
    :raises SourceUnavailableError: a file is missing.
    """
    src = _source(entry, variant)
    rel = Path(src.file)
    weights = _inside(entry, rel, "weights file")
    size = weights.stat().st_size
    if variant.size is not None and size != variant.size:
        raise IntegrityError(f"{entry.manifest}: the weights file {src.file} is {size} bytes, the "
                             f"manifest says {variant.size}. Refused.")
    sha = _check_hash(entry, weights, variant.sha256, "weights file")
    validate_safetensors(weights)
    files = {}
    for f in variant.files:  # companion files live beside the weights file
        path = _inside(entry, rel.parent / f.path, "companion file")
        _check_hash(entry, path, f.sha256, "companion file")
        files[f.path] = path
    return WeightFiles(variant=variant, weights=weights, sha256=sha, files=files)


def saved_info(entry: SavedEntry) -> dict[str, Any]:
    """What ``hub info DIRECTORY`` shows: the manifest's fields, where it lies, the lineage.
    Hashes nothing (``hub.load`` verifies)."""
    spec = entry.spec
    data = spec.model_dump(mode="json")
    data["manifest"] = str(entry.manifest)
    data["plugin"] = None
    default = spec.default_variant
    data["default_weights"] = default.name if default else None
    for v, vd in zip(spec.weights, data["weights"], strict=True):
        src = next((s for s in v.sources if isinstance(s, SavedSource)), None)
        vd["pinned"] = v.pinned
        vd["cached"] = False
        vd["cache_path"] = None
        vd["cached_sha256"] = None
        vd["local_path"] = str(entry.root / src.file) if src else None
    return data
