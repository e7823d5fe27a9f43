"""Resolving a weight variant to verified local safetensors.

Order: a finished cache entry whose files still match their lock record; else
each source in the manifest's order. Whatever a source delivers is hashed and
compared with the manifest's sha256 *before* it is converted or stored; an
unpinned variant (no sha256) is recorded on its first pull and checked against
that record afterwards. Everything is staged and moved into the cache in one
rename (see :mod:`hub.cache`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.cache import FILES_DIR, WEIGHTS_NAME, Cache, FileRecord, LockRecord, place, sha256_file
from hub.config import Settings, get_settings
from hub.convert import convert_pickle, validate_safetensors
from hub.errors import (
    ConversionError,
    IntegrityError,
    OfflineError,
    SourceUnavailableError,
    WeightsError,
)
from hub.manifest import BackboneSpec, HuggingFaceSource, WeightVariant
from hub.provider import WeightFiles
from hub.sources import Fetched, fetch

__all__ = ["cached_weights", "resolve_weights"]

Converter = Callable[[dict[str, Any]], dict[str, Any]]


def _to_files(cache: Cache, variant: WeightVariant, rec: LockRecord) -> WeightFiles:
    base = cache.entry_dir(rec.model, rec.variant)
    return WeightFiles(variant=variant, weights=base / WEIGHTS_NAME, sha256=rec.weights.sha256,
                       files={k: base / FILES_DIR / k for k in rec.files})


def _record_matches(rec: LockRecord, variant: WeightVariant) -> bool:
    """A record still describes the manifest's variant (the pin may have changed)."""
    if variant.sha256 is not None and rec.source_sha256 != variant.sha256:
        return False
    return set(rec.files) == {f.path for f in variant.files}


def cached_weights(spec: BackboneSpec, variant: WeightVariant, *,
                   settings: Settings | None = None) -> WeightFiles | None:
    """The verified cache entry for a variant, or ``None``. Writes nothing."""
    cache = Cache((settings or get_settings()).cache_dir)
    rec = cache.read_record(spec.name, variant.name)
    if rec is None or not _record_matches(rec, variant) or cache.quick_check(rec):
        return None
    return _to_files(cache, variant, rec)


def _stage(fetched: Fetched, spec: BackboneSpec, variant: WeightVariant, cache: Cache,
           converter: Converter | None, pinned_record: LockRecord | None) -> LockRecord:
    """Verify what a source delivered, convert it, and commit it to the cache."""
    source_sha = sha256_file(fetched.weights)
    expected = variant.sha256 or (pinned_record.source_sha256 if pinned_record else None)
    if expected is not None and source_sha != expected:
        raise IntegrityError(
            f"{spec.name}/{variant.name}: {fetched.source} has sha256 {source_sha}, but "
            f"{'the manifest pins' if variant.sha256 else 'the first pull recorded'} {expected}. "
            "The bytes were refused and the cache is unchanged. Check the source or the manifest.")
    if variant.size is not None and fetched.weights.stat().st_size != variant.size:
        raise IntegrityError(f"{spec.name}/{variant.name}: {fetched.source} is "
                             f"{fetched.weights.stat().st_size} bytes, the manifest says {variant.size}.")
    file_records = {}
    for f in variant.files:
        got = sha256_file(fetched.files[f.path])
        if f.sha256 is not None and got != f.sha256:
            raise IntegrityError(f"{spec.name}/{variant.name}: companion file {f.path} has sha256 "
                                 f"{got}, the manifest pins {f.sha256}. Refused; cache unchanged.")
        file_records[f.path] = FileRecord(sha256=got, size=0, mtime_ns=0)
    with cache.staging() as stage:
        out = stage / WEIGHTS_NAME
        if variant.format == "pickle":
            convert_pickle(fetched.weights, out, converter)
            stored_sha = sha256_file(out)
        else:
            validate_safetensors(fetched.weights)
            place(fetched.weights, out)
            stored_sha = source_sha
        validate_safetensors(out)
        for rel, path in fetched.files.items():
            place(path, stage / FILES_DIR / rel)
        rec = LockRecord(model=spec.name, variant=variant.name, format=variant.format,
                         source=fetched.source, commit=fetched.commit, source_sha256=source_sha,
                         pinned=variant.pinned, weights=FileRecord(stored_sha, 0, 0),
                         files=file_records)
        return cache.commit(stage, rec)


def resolve_weights(spec: BackboneSpec, variant: WeightVariant, *,
                    converter: Converter | None = None, settings: Settings | None = None,
                    force: bool = False,
                    progress: Callable[[str], None] | None = None) -> WeightFiles:
    """Return verified local weights for a variant, pulling them if needed.

    :param spec: the backbone's manifest entry.
    :param variant: which weights.
    :param converter: the key converter the variant names (pickle sources).
    :param settings: cache root, offline mode, endpoint (default: the environment).
    :param force: ignore a cached entry and fetch again.
    :param progress: called with each file name as it is fetched.
    :raises IntegrityError: a source served other bytes than pinned (cache unchanged).
    :raises OfflineError: offline, and the weights are neither cached nor installed locally.
    :raises SourceUnavailableError: no source could deliver.
    """
    settings = settings or get_settings()
    cache = Cache(settings.cache_dir)
    if not force:
        hit = cached_weights(spec, variant, settings=settings)
        if hit is not None:
            return hit
    if variant.format == "pickle" and variant.converter is not None and converter is None:
        raise ConversionError(f"{spec.name}/{variant.name} needs the converter "
                              f"{variant.converter!r}, which no loaded plugin registers.")
    with cache.lock(spec.name, variant.name):
        if not force:  # another process may have finished the pull while we waited
            hit = cached_weights(spec, variant, settings=settings)
            if hit is not None:
                return hit
        previous = cache.read_record(spec.name, variant.name)
        pinned_record = previous if previous is not None and not variant.pinned else None
        failures: list[WeightsError] = []
        extra = [f.path for f in variant.files]
        for src in variant.sources:
            try:
                try:
                    fetched = fetch(src, extra, cache=cache, settings=settings, force=force,
                                    progress=progress)
                    rec = _stage(fetched, spec, variant, cache, converter, pinned_record)
                except IntegrityError:
                    if not isinstance(src, HuggingFaceSource) or settings.offline or force:
                        raise
                    # the Hub cache itself may hold damaged bytes: fetch them afresh once
                    fetched = fetch(src, extra, cache=cache, settings=settings, force=True,
                                    progress=progress)
                    rec = _stage(fetched, spec, variant, cache, converter, pinned_record)
            except (SourceUnavailableError, IntegrityError, ConversionError) as exc:
                failures.append(exc)
                continue
            return _to_files(cache, variant, rec)
    integrity = [f for f in failures if isinstance(f, IntegrityError)]
    if integrity:
        raise integrity[0]
    if failures and all(isinstance(f, OfflineError) for f in failures):
        raise OfflineError(f"{spec.name} ({variant.name}) is not in the cache and offline mode is "
                           f"on. Run `hub pull {spec.name}` with network access first.")
    conv = [f for f in failures if isinstance(f, ConversionError)]
    if conv:
        raise conv[0]
    detail = "; ".join(str(f) for f in failures)
    raise SourceUnavailableError(f"No source could deliver {spec.name} ({variant.name}): {detail}")
