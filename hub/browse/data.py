"""The zoo page's data: every catalogue entry as plain JSON, with what was measured here.

:func:`entry_data` turns one :class:`~hub.manifest.BackboneSpec` into the record the page
shows (the table columns, and the details pane: variants, sources, preprocessing, stages);
:func:`page_data` joins those records with this machine's ``hub bench`` and ``hub probe``
records (:mod:`hub.machine`); :func:`collect` does both for the loaded catalogue and cache.
Nothing here imports torch: the page is built from manifests and JSON alone.

Measurement records are read as the contract of issue 14 describes them (``bench``: keyed
by backbone name, ``items_per_s``/``latency_ms`` medians; ``probe``: keyed
``name@fingerprint``, ``knn``/``logreg`` mean accuracies in [0, 1]). A record is embedded as
written (non-finite numbers become ``null``) and the figures the table and chart use are
taken from it where they are numbers; anything else shows as missing, never as an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from hub.manifest import BackboneSpec, WeightVariant

__all__ = ["SCHEMA", "collect", "entry_data", "page_data"]

#: Version of the page data layout (the page's script checks it).
SCHEMA = 1


def _clean(value: Any) -> Any:
    """``value`` as strict JSON: NaN and infinities become ``None``, keys become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _number(record: Mapping[str, Any], *path: str) -> float | None:
    """``record[path[0]][path[1]]...`` if it is a finite number, else ``None``."""
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _variant(v: WeightVariant, pulled: bool | None) -> dict[str, Any]:
    return {"name": v.name, "description": v.description, "format": v.format, "sha256": v.sha256,
            "size": v.size, "pinned": v.pinned, "license": v.license, "converter": v.converter,
            "sources": [s.describe() for s in v.sources], "files": [f.path for f in v.files],
            "pulled": pulled}


def entry_data(spec: BackboneSpec, *, pulled: Mapping[str, bool] | None = None,
               origin: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One backbone as the page shows it.

    :param pulled: variant name -> whether its weights are in the cache; ``None`` when the page
        is built from the manifests alone (the page then hides the "pulled" column).
    :param origin: where the manifest came from (``{"plugin": ..., "manifest": ...}``), if known.
    """
    default = spec.default_variant
    top1 = spec.stats.top1
    pre = spec.preprocessing.image or spec.preprocessing.text
    return {
        "name": spec.name, "aliases": list(spec.aliases), "modality": spec.modality,
        "tasks": list(spec.tasks), "provider": spec.provider, "architecture": spec.architecture,
        "description": spec.description, "license": spec.license,
        "paper": spec.paper.model_dump(mode="json") if spec.paper else None,
        "params_m": spec.stats.params_m, "gmacs": spec.stats.gmacs,
        "input_size": spec.stats.input_size,
        "top1": top1.value if top1 else None,
        "top1_source": {"dataset": top1.dataset, "source": top1.source} if top1 else None,
        "default_weights": default.name if default else None,
        "pinned": bool(default and default.pinned),
        "pulled": None if pulled is None else bool(default and pulled.get(default.name, False)),
        "variants": [_variant(v, None if pulled is None else pulled.get(v.name, False))
                     for v in spec.weights],
        "preprocessing": {"kind": spec.modality, **(pre.model_dump(mode="json") if pre else {})},
        "outputs": spec.outputs.model_dump(mode="json"),
        "origin": dict(origin) if origin is not None else None,
        "bench": None, "probe": {},
    }


def _bench(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"items_per_s": _number(record, "items_per_s", "median"),
            "latency_ms": _number(record, "latency_ms", "median"),
            "peak_memory_mib": _number(record, "peak_memory_mib"),
            "random_weights": record.get("random_weights") is True,
            "record": _clean(record)}


def _probe(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"knn": _number(record, "knn", "mean"), "knn_std": _number(record, "knn", "std"),
            "logreg": _number(record, "logreg", "mean"),
            "logreg_std": _number(record, "logreg", "std"), "record": _clean(record)}


def _dataset(fingerprint: str, record: Mapping[str, Any]) -> dict[str, Any]:
    ds = record.get("dataset")
    ds = ds if isinstance(ds, Mapping) else {}
    classes = ds.get("classes")
    path = ds.get("path")
    return {"fingerprint": fingerprint, "path": path if isinstance(path, str) else fingerprint,
            "rows": _number(ds, "rows"), "classes": len(classes) if isinstance(classes, Mapping) else None}


def page_data(entries: Iterable[dict[str, Any]], *,
              bench: Mapping[str, Mapping[str, Any]] | None = None,
              probe: Mapping[str, Mapping[str, Any]] | None = None,
              machine: Mapping[str, Any] | None = None, title: str = "backbone-hub zoo",
              problems: Iterable[str] = ()) -> dict[str, Any]:
    """Everything the page embeds: the entries (from :func:`entry_data`) with their measurements.

    :param bench: ``hub bench`` records by backbone name (:func:`hub.machine.read_records`).
    :param probe: ``hub probe`` records keyed ``name@dataset_fingerprint``.
    :param machine: the machine the records were measured on (:func:`hub.machine.machine_info`);
        ``None`` for a page built from the manifests alone.
    :param problems: catalogue problems (a manifest that failed to load), shown above the table.
    :returns: a JSON-serialisable dict; records naming no catalogue entry are listed under
        ``"unmatched"`` instead of being dropped silently.
    """
    rows = sorted((dict(e) for e in entries), key=lambda e: e["name"])
    by_name = {e["name"]: e for e in rows}
    by_alias = {a.lower(): e for e in rows for a in [e["name"], *e["aliases"]]}
    unmatched: list[str] = []
    for key, record in sorted((bench or {}).items()):
        own = record.get("name") if isinstance(record, Mapping) else None
        name = own if isinstance(own, str) and own else key
        entry = by_alias.get(name.lower())
        if entry is None or not isinstance(record, Mapping):
            unmatched.append(f"bench {key}")
            continue
        entry["bench"] = _bench(record)
    datasets: dict[str, dict[str, Any]] = {}
    for key, record in sorted((probe or {}).items()):
        name, _, fingerprint = key.rpartition("@")
        if isinstance(record, Mapping):  # the record's own name and fingerprint win over the key's
            ds = record.get("dataset")
            fp = ds.get("fingerprint") if isinstance(ds, Mapping) else None
            fingerprint = fp if isinstance(fp, str) and fp else fingerprint
            own = record.get("name")
            name = own if isinstance(own, str) and own else name
        entry = by_alias.get(name.lower())
        if entry is None or not isinstance(record, Mapping) or not fingerprint:
            unmatched.append(f"probe {key}")
            continue
        entry["probe"][fingerprint] = _probe(record)
        datasets.setdefault(fingerprint, _dataset(fingerprint, record))
    return {"schema": SCHEMA, "title": title, "machine": _clean(machine) if machine else None,
            "cache_state": any(e["pulled"] is not None for e in by_name.values()),
            "entries": rows, "datasets": datasets, "unmatched": unmatched,
            "problems": list(problems)}


def collect(*, title: str = "backbone-hub zoo") -> dict[str, Any]:
    """The page data of the loaded catalogue, this cache's state and this machine's records."""
    from hub.api import get_catalog
    from hub.config import get_settings
    from hub.machine import machine_id, machine_info, read_records
    from hub.weights import cached_weights

    settings = get_settings()
    catalog = get_catalog(settings)
    entries = []
    for e in catalog:
        pulled = {v.name: cached_weights(e.spec, v, settings=settings) is not None for v in e.spec.weights}
        entries.append(entry_data(e.spec, pulled=pulled,
                                  origin={"plugin": e.plugin, "manifest": str(e.path)}))
    machine = {**machine_info(), "id": machine_id()}
    return page_data(entries, bench=read_records("bench"), probe=read_records("probe"),
                     machine=machine, title=title, problems=catalog.problems)
