"""``hub.probe.evaluate``: how well each backbone's frozen features separate the classes of a
labelled dataset, cross-validated, stored per machine (:mod:`hub.machine`, kind ``"probe"``).

Steps, each in its own module: open the labelled source (:mod:`hub.probe.data`), fingerprint
its content (:mod:`hub.probe.fingerprint`), get each backbone's pooled features from the cache
or one pass of the model (:mod:`hub.probe.features`), keep the rows every backbone could read
and that have a label, draw the folds once from their labels, and score a k-NN and a logistic
regression probe on each backbone's features (:mod:`hub.probe.scores`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hub.dataset.items import ItemError
from hub.errors import InputError
from hub.probe.data import Labelled, check_classes, open_labelled
from hub.probe.features import (
    FeatureSet,
    extract_features,
    feature_key,
    load_features,
    store_features,
)
from hub.probe.fingerprint import dataset_fingerprint, items_digest
from hub.probe.scores import Scores, cross_validate, knn_k, make_folds

__all__ = ["DatasetSummary", "ProbeResult", "evaluate"]

log = logging.getLogger("hub.probe")

_LOGGED = 20  # skipped rows named one by one in the log; the rest are counted


@dataclass(frozen=True)
class DatasetSummary:
    """The rows a probe used.

    :param path: the source, absolute. :param fingerprint: :func:`dataset_fingerprint`.
    :param rows: rows used. :param classes: rows used per class.
    :param skipped: rows left out (unreadable, or without a label).
    """

    path: str
    fingerprint: str
    rows: int
    classes: dict[str, int]
    skipped: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "fingerprint": self.fingerprint, "rows": self.rows,
                "classes": dict(self.classes), "skipped": self.skipped}


@dataclass(frozen=True)
class ProbeResult:
    """One backbone's probe accuracy on one dataset.

    :param knn: k-NN accuracy per fold (``k`` neighbours). :param logreg: logistic regression's.
    :param cached: the features came from the cache (no forward pass).
    :param skipped_rows: the rows left out, with the reason.
    """

    name: str
    variant: str
    dtype: str
    dataset: DatasetSummary
    folds: int
    seed: int
    k: int
    knn: Scores
    logreg: Scores
    cached: bool
    measured_at: str
    skipped_rows: list[ItemError] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The record's key in this machine's ``probe`` records: ``name@fingerprint``."""
        return f"{self.name}@{self.dataset.fingerprint}"

    def record(self) -> dict[str, Any]:
        """The stored record (docs/cli.md, ``hub probe``): the shared schema plus dtype, seed, k."""
        return {"name": self.name, "variant": self.variant, "random_weights": False,
                "dataset": self.dataset.to_json(), "folds": self.folds,
                "knn": self.knn.to_json(), "logreg": self.logreg.to_json(),
                "measured_at": self.measured_at, "dtype": self.dtype, "seed": self.seed,
                "knn_k": self.k}


@dataclass
class _Candidate:
    name: str
    load_name: str
    variant: str
    precision: str
    features: FeatureSet | None = None


def _precision(dtype: Any) -> str:
    """The precision features are computed in: a key of the features cache (read from
    :data:`hub.plan.DTYPES` without importing torch, so that a cache hit imports no model
    library)."""
    from hub.plan import dtype_name

    return dtype_name(dtype)  # raises InputError for anything else


def evaluate(names: Sequence[str], data: str | os.PathLike[str], *, folds: int = 5, seed: int = 0,
             column: str | None = None, label: str = "label", weights: str | None = None,
             device: Any = "auto", dtype: Any = None, batch_size: int = 64,
             workers: int | None = None, store: bool = True,
             progress: Callable[[str], None] | None = None) -> list[ProbeResult]:
    """Probe each backbone's frozen features on a labelled dataset.

    :param names: backbones (names from ``hub list`` or saved directories), all of one modality.
    :param data: a folder with one subfolder per class, or a JSONL, CSV or Parquet file with a
        ``label`` column and an item ``column`` (text, image path, or image bytes).
    :param folds: stratified cross-validation folds (the same for every backbone).
    :param seed: the folds' shuffle seed.
    :param weights, device, dtype: as in :func:`hub.load`, except that ``dtype`` defaults to
        float32 (``None``), not ``"auto"``: accuracy is compared at full precision, and the
        features cache is keyed by the precision named here.
    :param batch_size, workers: of the feature extraction (:func:`hub.dataset.iter_features`).
    :param store: write each result to this machine's ``probe`` records.
    :param progress: called with one line per step (the CLI prints them).
    :raises DatasetError: fewer than two classes, an empty class, a class with fewer usable rows
        than ``folds``.
    :raises InputError: a bad source, column or option; backbones of different modalities.
    """
    from hub.api import load, resolve

    say = progress or (lambda _: None)
    if not names:
        raise InputError("Name at least one backbone to probe.")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"folds must be an integer of at least 2, got {folds!r}.")
    precision = _precision(dtype)
    resolved = [(n, *resolve(n, weights=weights)) for n in names]
    modalities = {spec.modality for _, spec, _, _ in resolved}
    if len(modalities) > 1:
        raise InputError(f"Probe backbones of one modality at a time; got {', '.join(sorted(modalities))}.")
    source = open_labelled(data, modalities.pop(), column=column, label=label)
    check_classes(source.counts(), folds, path=source.path)
    items = items_digest(source.reader)
    candidates = []
    for name, spec, files, load_name in resolved:
        key, what = feature_key(spec, files, precision=precision, items=items)
        cand = _Candidate(spec.name, load_name, files.variant.name, precision)
        cand.features = load_features(key)
        if cand.features is not None:
            say(f"{name}: features of {len(cand.features.indices)} rows from the cache")
        else:
            say(f"{name}: extracting features of {len(source.reader)} rows")
            cand.features = extract_features(
                functools.partial(load, load_name, weights=weights, device=device, dtype=dtype),
                source.reader, batch_size=batch_size, workers=workers)
            store_features(key, what, cand.features)
        candidates.append(cand)
    return _score(source, items, candidates, folds=folds, seed=seed, store=store)


def _usable(source: Labelled, candidates: list[_Candidate]) -> tuple[list[int], list[ItemError]]:
    """Rows with a label and features from every backbone; the others, with the reason."""
    reasons: dict[int, ItemError] = {}
    ids = {}
    for cand in candidates:
        fs = cand.features
        if fs is None:
            continue
        for e in fs.errors:
            reasons.setdefault(e.index, e)
            ids[e.index] = e.id
    keep = set(range(len(source.reader)))
    for cand in candidates:
        if cand.features is not None:
            keep &= set(cand.features.indices)
    unlabelled = [i for i, lab in enumerate(source.labels) if lab is None]
    if unlabelled:
        for rec in source.reader.read(0, len(source.reader)):
            if source.labels[rec.index] is None and rec.index not in reasons:
                reasons[rec.index] = ItemError(rec.index, rec.id, "no label")
        keep -= set(unlabelled)
    skipped = [reasons.get(i, ItemError(i, ids.get(i, i), "no features"))
               for i in range(len(source.reader)) if i not in keep]
    return sorted(keep), skipped


def _score(source: Labelled, items: str, candidates: list[_Candidate], *, folds: int, seed: int,
           store: bool) -> list[ProbeResult]:
    import numpy as np

    from hub.machine import write_record

    rows, skipped = _usable(source, candidates)
    for e in skipped[:_LOGGED]:
        log.warning("skipped %s (row %d): %s", e.id, e.index, e.reason)
    if len(skipped) > _LOGGED:
        log.warning("... and %d more skipped rows", len(skipped) - _LOGGED)
    counts = {c: 0 for c in source.counts()} | source.counts(rows)
    check_classes(counts, folds, path=source.path, skipped=len(skipped))
    labels = [str(source.labels[i]) for i in rows]
    splits = make_folds(labels, folds, seed)
    k = knn_k(labels, splits)
    summary = DatasetSummary(source.path, dataset_fingerprint(items, source.labels), len(rows),
                             counts, len(skipped))
    results = []
    for cand in candidates:
        fs = cand.features
        if fs is None:
            continue
        position = {row: j for j, row in enumerate(fs.indices)}
        x = fs.features[np.asarray([position[r] for r in rows], dtype=np.int64)]
        scores = cross_validate(x, labels, splits, k=k)
        result = ProbeResult(cand.name, cand.variant, cand.precision, summary, folds, seed, k,
                             scores["knn"], scores["logreg"], fs.cached,
                             datetime.now(timezone.utc).isoformat(timespec="seconds"), skipped)
        if store:
            write_record("probe", result.key, result.record())
        results.append(result)
    return results
