"""Safe loading of manifest files: YAML that cannot run code or expand, then the schema.

Loading uses a safe loader that also refuses YAML aliases (so "billion laughs" bombs cannot
expand), refuses files over :data:`MAX_MANIFEST_BYTES`, and validates with the strict
pydantic models of :mod:`hub.manifest`. Every error is a :class:`~hub.errors.ManifestError`
naming the file, the model and the field. See ``docs/manifest.md`` for the reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hub.config import max_input_size
from hub.errors import ManifestError
from hub.manifest import BackboneSpec, ManifestFile

__all__ = ["MAX_MANIFEST_BYTES", "NoAliasLoader", "load_manifest_file", "parse_manifest", "safe_load"]

#: manifest files larger than this are refused unread
MAX_MANIFEST_BYTES = 1 << 20


class NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors/aliases (billion-laughs protection)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not allowed in manifests", event.start_mark)
        return super().compose_node(parent, index)


_CLOADER = getattr(yaml, "CSafeLoader", None)


def safe_load(text: str) -> Any:
    """Safe YAML without aliases (``yaml.YAMLError`` otherwise); libyaml's parser when present
    (about 10x faster than pure Python on the built-in manifests): its event stream is scanned for
    aliases first, which expands nothing (skipped for a text without any ``*``, the character every
    alias starts with)."""
    if _CLOADER is None:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    if "*" in text:  # an alias is spelled *name: without a '*' there is none to look for
        for event in yaml.parse(text, Loader=_CLOADER):
            if isinstance(event, yaml.AliasEvent):
                # types-PyYAML types the error's mark as the pure-Python Mark only; libyaml's works too
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases are not allowed in manifests",
                    event.start_mark)  # type: ignore[arg-type]
    return yaml.load(text, Loader=_CLOADER)  # noqa: S506 - libyaml's SafeLoader


def _field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_manifest(text: str, *, origin: str = "<string>") -> list[BackboneSpec]:
    """Parse manifest YAML text into backbone specs.

    :param text: the YAML document.
    :param origin: file name used in error messages.
    :raises ManifestError: on any YAML or schema problem.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{origin}: manifest is larger than {MAX_MANIFEST_BYTES} bytes; split it "
                            "into several files.", path=origin)
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # one line: CLI errors are one line
        raise ManifestError(f"{origin}: not valid safe YAML ({detail}). Manifests may not use python "
                            "tags or aliases.", path=origin) from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{origin}: expected a mapping with a 'backbones' list.", path=origin)
    try:
        specs = list(ManifestFile.model_validate(data).backbones)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        model = None
        if len(loc) >= 2 and loc[0] == "backbones" and isinstance(loc[1], int):
            entries = data.get("backbones") or []
            if loc[1] < len(entries) and isinstance(entries[loc[1]], dict):
                model = entries[loc[1]].get("name")
        field = _field_path(loc)
        where = f"model {model!r}, " if model else ""
        more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ManifestError(f"{origin}: {where}field {field!r}: {first['msg']}{more}. Fix the manifest; "
                            "see docs/manifest.md.", path=origin, model=model, field=field) from exc
    _check_unique(specs, origin)
    _check_sizes(specs, origin)
    return specs


def _check_sizes(specs: list[BackboneSpec], origin: str) -> None:
    """An image input side over ``HUB_MAX_INPUT_SIZE`` is refused before any memory is spent on
    it (a batch of 10**9 x 10**9 images would be the first allocation to fail)."""
    limit = max_input_size()
    for i, spec in enumerate(specs):
        image = spec.preprocessing.image
        if image is not None and image.size > limit:
            field = f"backbones[{i}].preprocessing.image.size"
            raise ManifestError(f"{origin}: model {spec.name!r}, field {field!r}: an input of "
                                f"{image.size:,} x {image.size:,} pixels is over the limit of "
                                f"{limit:,} (HUB_MAX_INPUT_SIZE). Fix the manifest, or raise "
                                "HUB_MAX_INPUT_SIZE if you mean it.", path=origin,
                                model=spec.name, field=field)


def _check_unique(specs: list[BackboneSpec], origin: str) -> None:
    """Names and aliases must be unique within a file (across files the catalogue checks)."""
    seen: dict[str, str] = {}
    for i, spec in enumerate(specs):
        labels = [("name", spec.name)] + [(f"aliases[{j}]", a) for j, a in enumerate(spec.aliases)]
        for field, label in labels:
            key = label.strip().lower()
            if key in seen and not (field != "name" and seen[key] == spec.name):
                raise ManifestError(
                    f"{origin}: model {spec.name!r}, field 'backbones[{i}].{field}': the name "
                    f"{label!r} is already used by {seen[key]!r} in this file. Names and aliases "
                    "must be unique.", path=origin, model=spec.name, field=f"backbones[{i}].{field}")
            seen.setdefault(key, spec.name)


def load_manifest_file(path: str | Path) -> list[BackboneSpec]:
    """Read and validate one manifest file (see :func:`parse_manifest`)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{p}: manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte "
                                "limit; split it into several files.", path=str(p))
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read manifest ({exc}).", path=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{p}: manifest is not UTF-8 text.", path=str(p)) from exc
    return parse_manifest(text, origin=str(p))
