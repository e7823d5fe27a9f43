"""Resolving a weight variant to verified local safetensors.

Order: a finished cache entry whose files still hash to their lock record; else
each source in the manifest's order. Whatever a source delivers is hashed and
compared with the manifest's sha256 *before* it is converted or stored; an
unpinned variant (no sha256) is recorded on its first pull -- commit and sha256 --
and every later pull fetches that commit and must produce those bytes (like
pip's hash-checking mode). Everything is staged and moved into the cache in one
rename (see :mod:`hub.cache`).

Bytes that fail verification (wrong sha256, malformed safetensors, a pickle the
safe unpickler refuses) are removed from huggingface_hub's cache as well, and a
Hub source is downloaded afresh once, so a damaged download heals itself and
nothing known to be bad is ever kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.cache import FILES_DIR, WEIGHTS_NAME, Cache, place, sha256_file
from hub.config import Settings, get_settings
from hub.convert import convert_pickle, validate_safetensors
from hub.errors import (
    ConversionError,
    IntegrityError,
    OfflineError,
    SourceUnavailableError,
    UnsafeWeightsError,
    WeightsError,
)
from hub.fetch import Fetched, RetryPolicy, discard, fetch
from hub.leftovers import sweep
from hub.lockrecord import FileRecord, LockRecord
from hub.manifest import BackboneSpec, HuggingFaceSource, WeightVariant
from hub.progress import Reporter, as_reporter
from hub.provider import WeightFiles

__all__ = ["cached_weights", "require_pinned", "resolve_weights"]

Converter = Callable[[dict[str, Any]], dict[str, Any]]


class _Refused(Exception):
    """Internal: ``error`` concerns the fetched file ``path``."""

    def __init__(self, error: WeightsError, path: Path) -> None:
        super().__init__(str(error))
        self.error = error
        self.path = path


def _to_files(cache: Cache, variant: WeightVariant, rec: LockRecord) -> WeightFiles:
    base = cache.entry_dir(rec.model, rec.variant)
    return WeightFiles(variant=variant, weights=base / WEIGHTS_NAME, sha256=rec.weights.sha256,
                       files={k: base / FILES_DIR / k for k in rec.files})


def record_matches(rec: LockRecord, variant: WeightVariant) -> bool:
    """A record still describes the manifest's variant (the pin may have changed since)."""
    if rec.format != variant.format:
        return False
    if variant.sha256 is not None and rec.source_sha256 != variant.sha256:
        return False
    if set(rec.files) != {f.path for f in variant.files}:
        return False
    return all(f.sha256 is None or rec.files[f.path].sha256 == f.sha256 for f in variant.files)


def cached_weights(spec: BackboneSpec, variant: WeightVariant, *,
                   settings: Settings | None = None, rehash: bool = False) -> WeightFiles | None:
    """The cache entry for a variant if it matches its lock record, or ``None``. Writes nothing.

    :param rehash: re-hash the files (once per process while they are unchanged) instead of
        comparing only their size and modification time. Loading does; ``hub list`` does not.
    """
    cache = Cache((settings or get_settings()).cache_dir)
    rec = cache.read_record(spec.name, variant.name)
    if rec is None or not record_matches(rec, variant) or cache.quick_check(rec):
        return None
    if rehash and cache.full_check(rec, remember=True):
        return None
    return _to_files(cache, variant, rec)


def require_pinned(spec: BackboneSpec, variant: WeightVariant) -> None:
    """Refuse a variant whose manifest pins no sha256 or names a branch (``--require-pinned``).

    :raises IntegrityError: saying what is missing and how to pin it.
    """
    if variant.pinned:
        return
    why = []
    if variant.sha256 is None:
        why.append("no sha256")
    why += [f"{s.repo} at branch/tag {s.revision!r}, not a commit"
            for s in variant.sources if isinstance(s, HuggingFaceSource) and not s.pinned]
    raise IntegrityError(f"{spec.name} ({variant.name}) is not pinned ({'; '.join(why)}), and "
                         f"pinned weights are required. A maintainer can pin it with `hub pin "
                         f"{spec.name}`, which records the commit and sha256 in the manifest.")


def _check_source(fetched: Fetched, spec: BackboneSpec, variant: WeightVariant,
                  expected: str | None) -> tuple[str, dict[str, FileRecord]]:
    """Hash what a source delivered against the pins; returns the weights' sha and file records."""
    label = f"{spec.name}/{variant.name}"
    source_sha = sha256_file(fetched.weights)
    prefix = fetched.sha256_prefix
    if prefix is not None and not source_sha.startswith(prefix):
        raise _Refused(IntegrityError(
            f"{label}: {fetched.source} has sha256 {source_sha}, which does not start with "
            f"{prefix}, the hash its publisher put in the file name. The bytes were refused and "
            "the cache is unchanged. Check the source or the mirror (HUB_URL_MIRRORS)."),
            fetched.weights)
    if expected is not None and source_sha != expected:
        raise _Refused(IntegrityError(
            f"{label}: {fetched.source} has sha256 {source_sha}, but "
            f"{'the manifest pins' if variant.sha256 else 'the first pull recorded'} {expected}. "
            "The bytes were refused and the cache is unchanged. Check the source or the manifest."),
            fetched.weights)
    size = fetched.weights.stat().st_size
    if variant.size is not None and size != variant.size:
        raise _Refused(IntegrityError(f"{label}: {fetched.source} is {size} bytes, the manifest "
                                      f"says {variant.size}. Refused; cache unchanged."),
                       fetched.weights)
    records = {}
    for f in variant.files:
        path = fetched.files[f.path]
        got = sha256_file(path)
        if f.sha256 is not None and got != f.sha256:
            raise _Refused(IntegrityError(f"{label}: companion file {f.path} has sha256 {got}, "
                                          f"the manifest pins {f.sha256}. Refused; cache "
                                          "unchanged."), path)
        records[f.path] = FileRecord(sha256=got, size=0, mtime_ns=0)
    if variant.format == "safetensors":
        try:
            validate_safetensors(fetched.weights)
        except UnsafeWeightsError as exc:
            raise _Refused(exc, fetched.weights) from exc
    return source_sha, records


def _stage(fetched: Fetched, spec: BackboneSpec, variant: WeightVariant, cache: Cache,
           converter: Converter | None, locked: LockRecord | None,
           reporter: Reporter) -> LockRecord:
    """Verify what a source delivered, convert it, and commit it to the cache."""
    expected = variant.sha256 or (locked.source_sha256 if locked else None)
    source_sha, file_records = _check_source(fetched, spec, variant, expected)
    with cache.staging() as stage:
        out = stage / WEIGHTS_NAME
        if variant.format == "pickle":
            reporter.step(f"converting {fetched.weights.name} to safetensors")
            try:
                convert_pickle(fetched.weights, out, converter)
            except UnsafeWeightsError as exc:
                raise _Refused(exc, fetched.weights) from exc
            stored_sha = sha256_file(out)
            validate_safetensors(out)
        else:
            place(fetched.weights, out, link=fetched.in_hf_cache)
            stored_sha = source_sha
        for rel, path in fetched.files.items():
            place(path, stage / FILES_DIR / rel, link=fetched.in_hf_cache)
        rec = LockRecord(model=spec.name, variant=variant.name, format=variant.format,
                         source=fetched.source, commit=fetched.commit, source_sha256=source_sha,
                         pinned=variant.pinned, weights=FileRecord(stored_sha, 0, 0),
                         files=file_records)
        return cache.commit(stage, rec)


def _pull_from(src: Any, spec: BackboneSpec, variant: WeightVariant, *, cache: Cache,
               settings: Settings, converter: Converter | None, locked: LockRecord | None,
               force: bool, reporter: Reporter, retry: RetryPolicy | None) -> LockRecord:
    """Fetch one source, verify and store it; a Hub download refused once is fetched again."""
    revision = None
    if (locked is not None and locked.commit and isinstance(src, HuggingFaceSource)
            and locked.source == src.describe()):
        revision = locked.commit  # the lock: the commit the first pull resolved
    extra = [f.path for f in variant.files]
    def attempt(fetched: Fetched) -> LockRecord:
        rec = _stage(fetched, spec, variant, cache, converter, locked, reporter)
        if fetched.downloaded:  # stored (converted or copied): hub's own download is done with
            for path in [fetched.weights, *fetched.files.values()]:
                discard(fetched, path, cache)
        return rec

    fetched = fetch(src, extra, cache=cache, settings=settings, force=force, revision=revision,
                    reporter=reporter, retry=retry)
    try:
        return attempt(fetched)
    except _Refused as refused:
        if not fetched.disposable:
            raise refused.error from None
        discard(fetched, refused.path, cache)
        if settings.offline or force:
            raise refused.error from None
        reporter.step(f"{refused.path.name} was refused ({type(refused.error).__name__}); "
                      "downloading it again")
    fetched = fetch(src, extra, cache=cache, settings=settings, force=True, revision=revision,
                    reporter=reporter, retry=retry)
    try:
        return attempt(fetched)
    except _Refused as refused:
        discard(fetched, refused.path, cache)
        raise refused.error from None


def resolve_weights(spec: BackboneSpec, variant: WeightVariant, *,
                    converter: Converter | None = None, settings: Settings | None = None,
                    force: bool = False, trust_cache: bool = True,
                    progress: Reporter | Callable[[str], None] | None = None,
                    retry: RetryPolicy | None = None) -> WeightFiles:
    """Return verified local weights for a variant, pulling them if needed.

    :param spec: the backbone's manifest entry.
    :param variant: which weights.
    :param converter: the key converter the variant names (pickle sources).
    :param settings: cache root, offline mode, endpoint (default: the environment).
    :param force: ignore a cached entry and download again (huggingface_hub's cache too).
    :param trust_cache: ``False`` rebuilds the entry even if its quick check passes (``hub verify
        --repair``); files huggingface_hub already holds are re-verified and reused.
    :param progress: a :class:`~hub.progress.Reporter`, or a callable given each file name.
    :param retry: how Hub downloads are retried (default :data:`hub.fetch.DEFAULT_RETRY`).
    :raises IntegrityError: a source served other bytes than pinned (cache unchanged).
    :raises UnsafeWeightsError: the checkpoint is malformed or would run code (cache unchanged).
    :raises OfflineError: offline, and the weights are neither cached nor installed locally.
    :raises SourceUnavailableError: no source could deliver.
    :raises CacheError: the cache is read-only, or the disk is full.
    """
    settings = settings or get_settings()
    cache = Cache(settings.cache_dir)
    reporter = as_reporter(progress)
    if not force and trust_cache:
        hit = cached_weights(spec, variant, settings=settings, rehash=True)
        if hit is not None:
            cache.touch(spec.name, variant.name)
            return hit
    if variant.format == "pickle" and variant.converter is not None and converter is None:
        raise ConversionError(f"{spec.name}/{variant.name} needs the converter "
                              f"{variant.converter!r}, which no loaded plugin registers.")
    cache.require_writable(f"pulling {spec.name} ({variant.name})")
    if variant.size is not None:
        cache.require_space(variant.size * (2 if variant.format == "pickle" else 1),
                            f"pulling {spec.name} ({variant.name})")
    with cache.lock(spec.name, variant.name):
        sweep(cache.root)
        if not force and trust_cache:  # another process may have finished the pull meanwhile
            hit = cached_weights(spec, variant, settings=settings, rehash=True)
            if hit is not None:
                return hit
        previous = cache.read_record(spec.name, variant.name)
        locked = previous if previous is not None and not variant.pinned else None
        failures: list[WeightsError] = []
        for src in variant.sources:
            try:
                rec = _pull_from(src, spec, variant, cache=cache, settings=settings,
                                 converter=converter, locked=locked, force=force,
                                 reporter=reporter, retry=retry)
            except (SourceUnavailableError, IntegrityError, ConversionError,
                    UnsafeWeightsError) as exc:
                failures.append(exc)
                continue
            return _to_files(cache, variant, rec)
    for kind in (IntegrityError, UnsafeWeightsError):
        first = next((f for f in failures if isinstance(f, kind)), None)
        if first is not None:
            raise first
    if any(isinstance(f, OfflineError) for f in failures) and all(
            type(f) in (OfflineError, SourceUnavailableError) for f in failures):
        others = "; ".join(str(f) for f in failures if not isinstance(f, OfflineError))
        raise OfflineError(f"{spec.name} ({variant.name}) is not in the cache and offline mode is "
                           f"on. Run `hub pull {spec.name}` with network access first."
                           + (f" (Other sources: {others})" if others else ""))
    conv = [f for f in failures if isinstance(f, ConversionError)]
    if conv:
        raise conv[0]
    detail = "; ".join(str(f) for f in failures)
    raise SourceUnavailableError(f"No source could deliver {spec.name} ({variant.name}): {detail}")
