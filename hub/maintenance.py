"""Looking after the cache: verify entries, list them, remove them, prune what no manifest names.

These are the functions behind ``hub verify``, ``hub cache ls|rm|prune``. Each
takes the :class:`~hub.cache.Cache` and the :class:`~hub.catalog.Catalog`
explicitly and returns plain records; the CLI only prints them.

Runtime exports (``<root>/runtimes/``, :mod:`hub.runtimes.store`) are derived from a
weights entry: removing the entry removes them (:func:`plan_remove`), and :func:`plan_prune`
removes those whose weights are no longer cached (or are pruned with them), those made from
other bytes than the cached ones, and those made with another version of the runtime or of
torch than the installed one (a version that is not installed is not judged).

Verification statuses:

=========  ==================================================================
``ok``     every file re-hashes to its lock record, and the record matches the
           manifest's pins
``corrupt`` a file's bytes differ from the record, or the record is unreadable
``missing`` the backbone was never pulled, or a file of its entry is gone
``stale``  the files are intact but the manifest now pins other bytes
=========  ==================================================================
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hub.cache import Cache, EntryState, tree_size
from hub.catalog import Catalog
from hub.leftovers import hf_partials, leftovers, url_partials
from hub.lockrecord import LockRecord
from hub.manifest import HuggingFaceSource, WeightVariant
from hub.runtimes import store
from hub.weights import record_matches

if TYPE_CHECKING:
    from huggingface_hub import HFCacheInfo

__all__ = ["CacheRow", "EntryReport", "PruneItem", "list_entries", "list_exports", "plan_prune",
           "plan_remove", "prune", "verify_entries"]

OK, CORRUPT, MISSING, STALE = "ok", "corrupt", "missing", "stale"


@dataclass
class EntryReport:
    """The verdict on one ``model/variant``.

    :param status: ``ok``, ``corrupt``, ``missing`` or ``stale``.
    :param problems: what is wrong, one line each.
    :param known: whether a manifest names this variant (only then can it be repaired).
    """

    model: str
    variant: str
    status: str
    problems: list[str] = field(default_factory=list)
    known: bool = True

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class CacheRow:
    """One line of ``hub cache ls``."""

    model: str
    variant: str
    size: int
    last_used: float | None
    pinned: bool | None
    source: str | None
    path: Path


@dataclass(frozen=True)
class PruneItem:
    """Something :func:`prune` would remove, and why."""

    kind: str  # "entry", "hf-revision", "runtime", "leftover", "partial"
    label: str
    size: int
    reason: str
    path: Path
    commit: str | None = None


def _lookup(catalog: Catalog, model: str, variant: str) -> WeightVariant | None:
    entry = catalog.entries.get(model)
    return None if entry is None else entry.spec.variant(variant)


def _verdict(cache: Cache, state: EntryState, catalog: Catalog) -> EntryReport:
    variant = _lookup(catalog, state.model, state.variant)
    known = variant is not None
    if state.record is None:
        return EntryReport(state.model, state.variant, CORRUPT,
                           ["lock.json is missing or unreadable"], known)
    problems = cache.full_check(state.record)
    if problems:
        gone = all(p.endswith(": missing") for p in problems)
        return EntryReport(state.model, state.variant, MISSING if gone else CORRUPT, problems, known)
    if variant is not None and not record_matches(state.record, variant):
        return EntryReport(state.model, state.variant, STALE,
                           ["the manifest now pins other bytes (or other files) for this variant"],
                           known)
    note = [] if known else ["no manifest names it any more (`hub cache prune` removes it)"]
    return EntryReport(state.model, state.variant, OK, note, known)


def verify_entries(cache: Cache, catalog: Catalog,
                   names: Iterable[str] | None = None) -> list[EntryReport]:
    """Re-hash cache entries against their lock records.

    :param names: backbone names or aliases; each one's cached variants are checked,
        and its default variant is reported ``missing`` when not cached. ``None``
        checks every entry in the cache.
    :raises UnknownBackboneError: a name no manifest declares.
    """
    states = cache.scan()
    if names is None:
        return [_verdict(cache, s, catalog) for s in states]
    out = []
    for name in names:
        spec = catalog.get(name).spec
        mine = [s for s in states if s.model == spec.name]
        out += [_verdict(cache, s, catalog) for s in mine]
        default = spec.default_variant
        if default is not None and all(s.variant != default.name for s in mine):
            out.append(EntryReport(spec.name, default.name, MISSING, ["not pulled"]))
    return out


def list_entries(cache: Cache) -> list[CacheRow]:
    """Every entry in the cache with its size, last use, pin state and source."""
    rows = []
    for s in cache.scan():
        rec = s.record
        rows.append(CacheRow(s.model, s.variant, cache.size(s.model, s.variant),
                             cache.last_used(s.model, s.variant),
                             rec.pinned if rec else None, rec.source if rec else None, s.path))
    return rows


def list_exports(cache: Cache) -> list[store.Export]:
    """Every cached runtime export (``hub cache ls`` lists them after the weights)."""
    return store.scan(cache.root)


def _release(version: str) -> str:
    """``2026.4.1-22982-e213a14...`` / ``2.14.1+cu130`` -> ``2026.4.1`` / ``2.14.1``."""
    return version.split("-", 1)[0].split("+", 1)[0]


def _installed(distribution: str) -> str | None:
    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return None


def _stale_export(export: store.Export, weights: dict[tuple[str, str], str]) -> str | None:
    """Why ``export`` should go, or ``None`` to keep it.

    :param weights: ``(model, variant) -> sha256`` of the weights entries that stay.
    """
    key = export.key
    if key is None:
        return "its record is missing or unreadable"
    sha = weights.get((export.model, export.variant))
    if sha is None:
        return "its weights are not in the cache (or are pruned with it)"
    if key.get("weights_sha256") != sha:
        return "exported from other weights than the cached ones"
    for dist, field_name in ((export.runtime, "runtime_version"), ("torch", "torch")):
        have = _installed(dist)
        made = str(key.get(field_name, ""))
        if have is not None and _release(made) != _release(have):
            return f"made with {dist} {_release(made)}; {dist} {have} is installed"
    return None


def _export_item(export: store.Export, reason: str) -> PruneItem:
    return PruneItem("runtime", export.label, export.size, reason, export.path)


def _hf_info(cache: Cache) -> HFCacheInfo | None:
    if not cache.hf_dir.is_dir():
        return None
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir(cache.hf_dir)
    except CacheNotFound:
        return None


def _ref_commit(cache: Cache, repo: str, revision: str) -> str | None:
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    ref = cache.hf_dir / f"models--{repo.replace('/', '--')}" / "refs" / revision
    try:
        return ref.read_text().strip()
    except OSError:
        return None


def _record_repo(rec: LockRecord) -> str:
    """The repo id of a record whose source is ``hf://repo@revision/file``."""
    return rec.source[len("hf://"):].split("@", 1)[0]


def _hf_keep(cache: Cache, catalog: Catalog, records: Iterable[LockRecord]) -> set[tuple[str, str]]:
    """(repo, commit) pairs some manifest or kept lock record still names."""
    keep = set()
    for entry in catalog:
        for v in entry.spec.weights:
            for src in v.sources:
                if isinstance(src, HuggingFaceSource):
                    commit = _ref_commit(cache, src.repo, src.revision)
                    if commit:
                        keep.add((src.repo, commit))
    for rec in records:
        if rec.commit and rec.source.startswith("hf://"):
            keep.add((_record_repo(rec), rec.commit))
    return keep


def _hf_revision_items(cache: Cache, drop: Callable[[str, str], bool], why: str) -> list[PruneItem]:
    """huggingface_hub revisions for which ``drop(repo, commit)`` is true."""
    info = _hf_info(cache)
    if info is None:
        return []
    return [PruneItem("hf-revision", f"{repo.repo_id}@{rev.commit_hash[:12]}", rev.size_on_disk,
                      why, rev.snapshot_path, rev.commit_hash)
            for repo in info.repos for rev in repo.revisions if drop(repo.repo_id, rev.commit_hash)]


def plan_prune(cache: Cache, catalog: Catalog) -> list[PruneItem]:
    """What ``hub cache prune`` removes: entries and Hub revisions no manifest names any more,
    entries whose pin changed, and what killed pulls left behind. Removes nothing."""
    items, kept = [], []
    for s in cache.scan():
        variant = _lookup(catalog, s.model, s.variant)
        label, size = f"{s.model}/{s.variant}", cache.size(s.model, s.variant)
        if variant is None:
            items.append(PruneItem("entry", label, size, "no manifest names this variant", s.path))
        elif s.record is None:
            items.append(PruneItem("entry", label, size, "lock record unreadable", s.path))
        elif not record_matches(s.record, variant):
            items.append(PruneItem("entry", label, size, "the manifest now pins other bytes",
                                   s.path))
        else:
            kept.append(s.record)
    weights = {(r.model, r.variant): r.weights.sha256 for r in kept}
    for e in store.scan(cache.root):
        reason = _stale_export(e, weights)
        if reason is not None:
            items.append(_export_item(e, reason))
    keep = _hf_keep(cache, catalog, kept)
    items += _hf_revision_items(cache, lambda repo, commit: (repo, commit) not in keep,
                                "no manifest or cached entry names this revision")
    for p in leftovers(cache.root):
        items.append(PruneItem("leftover", p.name, tree_size(p), "left by a pull that was killed", p))
    for p in [*hf_partials(cache.root), *url_partials(cache.root)]:
        items.append(PruneItem("partial", p.name, tree_size(p), "an unfinished download", p))
    return items


def plan_remove(cache: Cache, model: str, variant: str | None = None) -> list[PruneItem]:
    """What ``hub cache rm`` removes: the entries, their runtime exports, and the Hub revisions
    only they recorded."""
    states = cache.scan()
    doomed = [s for s in states if s.model == model and (variant is None or s.variant == variant)]
    items = [PruneItem("entry", f"{s.model}/{s.variant}", cache.size(s.model, s.variant),
                       "removed by request", s.path) for s in doomed]
    items += [_export_item(e, "exported from these weights") for e in store.scan(cache.root)
              if e.model == model and (variant is None or e.variant == variant)]
    others = [s.record for s in states if s not in doomed and s.record is not None]
    mine = {(_record_repo(s.record), s.record.commit) for s in doomed
            if s.record is not None and s.record.commit and s.record.source.startswith("hf://")}
    drop = mine - _hf_keep(cache, Catalog(), others)
    items += _hf_revision_items(cache, lambda repo, commit: (repo, commit) in drop,
                                "downloaded for it, used by no other entry")
    return items


def prune(cache: Cache, items: list[PruneItem]) -> int:
    """Remove planned items; returns the bytes freed (as planned)."""
    freed = 0
    revisions = [i.commit for i in items if i.kind == "hf-revision" and i.commit]
    for i in items:
        if i.kind == "entry":
            model, _, variant = i.label.partition("/")
            cache.remove(model, variant)
        elif i.kind == "runtime":
            store.remove(cache.root, i.path)
        elif i.kind in ("leftover", "partial"):
            if i.path.is_dir():
                shutil.rmtree(i.path, ignore_errors=True)
            else:
                i.path.unlink(missing_ok=True)
        freed += i.size if i.kind != "hf-revision" else 0
    if revisions:
        info = _hf_info(cache)
        if info is not None:
            strategy = info.delete_revisions(*revisions)
            freed += strategy.expected_freed_size
            strategy.execute()
    return freed
