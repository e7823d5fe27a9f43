"""A search query: its modality, the backbone that embeds it, and its embedding.

The query goes through the backbone recorded in the index's ``_manifest.json`` (name, weight
variant, sha256) with :meth:`Backbone.extract`, as the stored rows did. Which tower runs is
decided by the input's type, as ``extract()`` decides it: an image goes in as a
:class:`~pathlib.Path` (or a PIL image / array), a text as a ``str``. A backbone's modality
names the towers it has (``"image"``, ``"text"``, ``"image-text"``), so a text query over an
image index needs nothing more than a backbone whose modality includes ``text``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError, ModalityError, SearchIndexError, UnknownBackboneError

if TYPE_CHECKING:
    from hub.twotower import AnyBackbone

__all__ = ["backbone_for", "check_modality", "embed_query", "query_modality", "stored_modality",
           "towers"]

_KNOWN = frozenset({"image", "text"})


def towers(modality: str) -> frozenset[str]:
    """The input modalities a backbone of this modality embeds: ``"image-text"`` -> both."""
    return frozenset(modality.split("-"))


def query_modality(query: Any, *, image: bool = False) -> str:
    """``"image"`` for a path to an existing image file, a Path, a PIL image or an array (or any
    string with ``image=True``); ``"text"`` for any other string.

    :raises InputError: ``image=True`` with a path that is not a file, one word ending in an
        image suffix that names no file (a mistyped path), or an empty text.
    """
    from hub.inputs import IMAGE_SUFFIXES, is_array, is_pil, is_tensor

    if isinstance(query, os.PathLike) or is_pil(query) or is_array(query) or is_tensor(query):
        return "image"
    if not isinstance(query, str):
        raise InputError(f"A query is a text, an image file path, a PIL image or an array, not "
                         f"{type(query).__name__}.")
    if image:
        if not Path(query).is_file():
            raise InputError(f"--image: {query!r} is not a file. Give the path of an image file.")
        return "image"
    if Path(query).suffix.lower() in IMAGE_SUFFIXES and "\n" not in query:
        if Path(query).is_file():
            return "image"
        if len(query.split()) == 1:  # a lone file name is a mistyped path, not a text to embed
            raise InputError(f"{query!r} looks like an image path but there is no such file (from "
                             f"{os.getcwd()}). Check the path.")
    if not query.strip():
        raise InputError("The query text is empty. Give a text, or an image file path.")
    return "text"


def stored_modality(manifest: dict[str, Any]) -> str | None:
    """What the stored rows were: ``"image"`` or ``"text"`` (None when the manifest cannot say)."""
    source = manifest.get("source") or {}
    if source.get("modality") in ("image", "text"):
        return str(source["modality"])
    modality = (manifest.get("backbone") or {}).get("modality")
    if modality in ("image", "text"):
        return str(modality)
    if source.get("kind") in ("folder", "glob"):
        return "image"
    return None


def _modalities_that_embed(needed: frozenset[str]) -> list[str]:
    from hub.api import get_catalog

    found = {s.modality for s in (e.spec for e in get_catalog())}
    return sorted(m for m in found if needed <= towers(m))


def check_modality(manifest: dict[str, Any], modality: str) -> None:
    """Refuse a query whose modality the index's backbone has no tower for, saying which
    backbones have one (in the shared space of the stored rows)."""
    bb = manifest.get("backbone") or {}
    have = towers(str(bb.get("modality", "")))
    if modality in have or not have <= _KNOWN:
        return  # a modality this code does not know: extract() decides (ModalityError)
    stored = stored_modality(manifest) or "stored"
    needed = frozenset({modality, stored}) if stored in ("image", "text") else frozenset({modality})
    options = _modalities_that_embed(needed)
    both = " and ".join(sorted(needed))
    hint = (" or ".join(f"`hub list --modality {m}`" for m in options) if options else
            f"no installed backbone has {both} towers yet; two-tower backbones are listed by "
            "`hub list --modality image-text`")
    article = "an" if modality[0] in "aeiou" else "a"
    raise ModalityError(
        f"This index holds {stored} embeddings from {bb.get('name')} ({bb.get('modality')} "
        f"backbone), which cannot embed {article} {modality} query. Query it with "
        f"{'an image' if 'image' in have else 'a text'}, or extract the {stored}s again with a "
        f"backbone that embeds {both} into one space ({hint}).")


def backbone_for(manifest: dict[str, Any], backbone: str | os.PathLike[str] | AnyBackbone | None, *,
                 device: Any = "auto", dtype: Any = None) -> AnyBackbone:
    """The backbone the index was extracted with: loaded by the manifest's name and variant,
    or the one given (a name, a saved directory or a loaded Backbone), checked against the
    manifest's name and weights sha256.

    :raises SearchIndexError: the given backbone is another one, or the recorded one cannot be
        found in the catalogue (an index made from a saved directory: pass ``backbone=``).
    """
    from hub.api import load
    from hub.backbone import Backbone
    from hub.twotower import TwoTowerBackbone

    rec = manifest.get("backbone") or {}
    dtype = dtype if dtype is not None else (manifest.get("job") or {}).get("dtype")
    if isinstance(backbone, Backbone | TwoTowerBackbone):
        bb = backbone
    elif backbone is not None:
        bb = load(backbone, weights=rec.get("weights"), device=device, dtype=dtype)
    else:
        try:
            bb = load(str(rec.get("name")), weights=rec.get("weights"), device=device, dtype=dtype)
        except UnknownBackboneError as exc:
            raise SearchIndexError(f"The index was extracted with {rec.get('name')!r}, which the "
                                   f"catalogue does not know ({exc}). If it came from a saved "
                                   "directory, pass it: --backbone DIR (backbone=DIR).") from exc
    sha = bb.weights.sha256 if bb.weights is not None else None
    if bb.name != rec.get("name") or sha != rec.get("sha256"):
        raise SearchIndexError(
            f"The index was extracted with {rec.get('name')} (weights {rec.get('weights')}, sha256 "
            f"{str(rec.get('sha256'))[:12]}), not {bb.name} (sha256 {str(sha)[:12]}): their "
            "embeddings are not comparable. Search with the index's own backbone (leave "
            "--backbone out).")
    return bb


def embed_query(bb: AnyBackbone, query: Any, modality: str, manifest: dict[str, Any]) -> Any:
    """The query's (D,) float32 embedding: pooled and normalised as the stored rows were when
    the query has their modality; through the other tower's own pooling otherwise."""
    emb = manifest.get("embedding") or {}
    same = modality == stored_modality(manifest) or stored_modality(manifest) is None
    item = Path(query) if modality == "image" and isinstance(query, str) else query
    feats = bb.extract([item], stages=[], pool=emb.get("pool") if same else None,
                       normalize=emb.get("normalize"), batch_size=1)
    if feats.pooled is None:
        raise SearchIndexError(f"{bb.name} gave no pooled embedding for the query; the index "
                               "compares pooled embeddings.")
    vector = feats.pooled.float().cpu().numpy()[0]
    if vector.shape != (emb.get("dim"),):
        raise SearchIndexError(f"{bb.name} embeds the {modality} query in {vector.shape[0]} "
                               f"dimensions but the index stores {emb.get('dim')}-d embeddings. "
                               "Re-extract the index with this backbone.")
    return vector
