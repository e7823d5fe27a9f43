"""Writing a lock record's commit and sha256 back into a manifest file (``hub pin``).

The YAML text is edited in place, minimally: the variant's ``sha256:`` is set
(or inserted after ``format:``), the ``revision:`` of the Hub source the bytes
came from is set to the recorded commit (or inserted after ``repo:``), and
companion files without a ``sha256`` get one. Comments, order and layout stay
as they were, in block and in flow style. The new text is validated with the
manifest schema before the file is replaced (atomically); nothing is written
if it would not parse back to exactly these pins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from hub.atomic import write_atomic
from hub.errors import ManifestError
from hub.lockrecord import LockRecord
from hub.manifest import HuggingFaceSource
from hub.manifest_loader import NoAliasLoader, parse_manifest

__all__ = ["PinResult", "pin_file", "pin_text"]


@dataclass(frozen=True)
class PinResult:
    """What :func:`pin_file` changed: one human-readable line per field."""

    path: Path
    changes: list[str]
    text: str


def _get(mapping: yaml.MappingNode, key: str) -> tuple[Any, Any] | None:
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _items(node: Any, kind: type) -> list[Any]:
    return [n for n in node.value if isinstance(n, kind)] if isinstance(node, yaml.SequenceNode) else []


def _find(root: Any, items: list[tuple[str, str]], origin: str) -> yaml.MappingNode:
    """Walk ``[(list_key, name), ...]`` from the document root to one mapping."""
    node = root
    for list_key, name in items:
        found = _get(node, list_key) if isinstance(node, yaml.MappingNode) else None
        match = None
        for child in _items(found[1], yaml.MappingNode) if found else []:
            named = _get(child, "name")
            if named is not None and named[1].value == name:
                match = child
        if match is None:
            raise ManifestError(f"{origin}: no {list_key} entry named {name!r} to pin.", path=origin)
        node = match
    return cast(yaml.MappingNode, node)  # items is never empty: the walk ends on a matched mapping


class _Edits:
    """Text edits collected against the original text, applied back to front."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.edits: list[tuple[int, int, str]] = []

    def replace(self, node: yaml.ScalarNode, value: str) -> None:
        self.edits.append((node.start_mark.index, node.end_mark.index, f'"{value}"'))

    def insert_after(self, mapping: yaml.MappingNode, after_key: str, key: str, value: str) -> None:
        """Add ``key: "value"`` to ``mapping`` right after ``after_key``'s value."""
        found = _get(mapping, after_key)
        if found is None:
            raise ManifestError(f"cannot pin: no {after_key!r} key to insert {key!r} after")
        knode, vnode = found
        if mapping.flow_style:
            self.edits.append((vnode.end_mark.index, vnode.end_mark.index, f', {key}: "{value}"'))
            return
        end = vnode.end_mark.index
        if vnode.end_mark.column == 0:  # a block scalar ends at the start of the next line
            end -= 1
        else:
            newline = self.text.find("\n", end)
            end = len(self.text) if newline < 0 else newline
        indent = " " * knode.start_mark.column
        self.edits.append((end, end, f'\n{indent}{key}: "{value}"'))

    def apply(self) -> str:
        out = self.text
        for start, end, new in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            out = out[:start] + new + out[end:]
        return out


def pin_text(text: str, record: LockRecord, *, origin: str = "<string>") -> tuple[str, list[str]]:
    """The manifest text with ``record``'s commit and sha256 written into its variant.

    :returns: the new text and a description of each change (empty if already pinned).
    :raises ManifestError: the model or variant is not in the text, or the result would
        not validate to these pins.
    """
    specs = {s.name: s for s in parse_manifest(text, origin=origin)}
    spec = specs.get(record.model)
    variant = spec.variant(record.variant) if spec else None
    if spec is None or variant is None:
        raise ManifestError(f"{origin}: no model {record.model!r} with weights "
                            f"{record.variant!r} to pin.", path=origin, model=record.model)
    root = yaml.compose(text, Loader=NoAliasLoader)
    vnode = _find(root, [("backbones", record.model), ("weights", record.variant)], origin)
    edits, changes = _Edits(text), []
    if variant.sha256 != record.source_sha256:
        current = _get(vnode, "sha256")
        if current is not None:
            edits.replace(current[1], record.source_sha256)
        else:
            edits.insert_after(vnode, "format", "sha256", record.source_sha256)
        changes.append(f"weights.{variant.name}.sha256: {record.source_sha256}")
    found = _get(vnode, "sources")  # always there: the spec parsed from this text has sources
    sources = _items(found[1], yaml.MappingNode) if found else []
    source_index = None
    for i, (src, snode) in enumerate(zip(variant.sources, sources, strict=True)):
        if not isinstance(src, HuggingFaceSource) or src.describe() != record.source:
            continue
        source_index = i
        if record.commit and src.revision != record.commit:
            current = _get(snode, "revision")
            if current is not None:
                edits.replace(current[1], record.commit)
            else:
                edits.insert_after(snode, "repo", "revision", record.commit)
            changes.append(f"weights.{variant.name} source {src.repo}: revision {src.revision} "
                           f"-> {record.commit}")
    files = _get(vnode, "files")
    for f, fnode in zip(variant.files, _items(files[1], yaml.MappingNode) if files else [],
                        strict=True):
        if f.sha256 is None and f.path in record.files:
            edits.insert_after(fnode, "path", "sha256", record.files[f.path].sha256)
            changes.append(f"weights.{variant.name} file {f.path}: sha256 "
                           f"{record.files[f.path].sha256}")
    new = edits.apply()
    _check(new, record, origin, source_index)
    return new, changes


def _check(text: str, record: LockRecord, origin: str, source_index: int | None) -> None:
    """The new text must parse to exactly the recorded pins."""
    spec = next((s for s in parse_manifest(text, origin=origin) if s.name == record.model), None)
    variant = spec.variant(record.variant) if spec else None
    ok = variant is not None and variant.sha256 == record.source_sha256
    if ok and variant is not None and source_index is not None and record.commit:
        ok = getattr(variant.sources[source_index], "revision", None) == record.commit
    if not ok:
        raise ManifestError(f"{origin}: pinning {record.model} ({record.variant}) would not give "
                            "the recorded pins; the file was left unchanged. Edit it by hand.",
                            path=origin, model=record.model)


def pin_file(path: Path, record: LockRecord) -> PinResult:
    """Pin ``record`` into the manifest file at ``path``, replacing it atomically.

    :raises ManifestError: as :func:`pin_text`, or when the file cannot be written.
    """
    text = path.read_text(encoding="utf-8")
    new, changes = pin_text(text, record, origin=str(path))
    if changes:
        try:
            write_atomic(path, new, make_parent=False)
        except OSError as exc:
            raise ManifestError(f"{path}: cannot write the pinned manifest ({exc}).",
                                path=str(path)) from exc
    return PinResult(path, changes, new)
