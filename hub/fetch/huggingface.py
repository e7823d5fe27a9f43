"""Hub sources: files of a Hugging Face repo at a revision, through huggingface_hub only.

Downloads use huggingface_hub's cache under ``<HUB_CACHE>/huggingface``, its locks and its
resume, with the endpoint passed on every call. Failures are retried in two layers:

- ``huggingface_hub`` itself retries a failed metadata request (``HEAD``) with back-off,
  resumes a body cut off mid-file, and honours ``Retry-After`` on 429;
- :func:`fetch_hf` retries what it does not (:func:`hub.fetch.retry.retrying`): a 5xx answer
  to the download itself (``GET``) and a connection reset. A 404, a 401/403 and a 429 that
  outlived the library's own retries are not retried.

An endpoint whose name does not resolve or that refuses connections is found out first
(:func:`hub.fetch.reach.why_unreachable`), so the library's back-off never runs for it: files
huggingface_hub already holds are still served, anything else fails at once.
"""

from __future__ import annotations

from pathlib import Path

from hub.cache import Cache
from hub.config import Settings
from hub.errors import OfflineError, SourceUnavailableError
from hub.fetch.fetched import Fetched, companion
from hub.fetch.reach import why_unreachable
from hub.fetch.retry import DEFAULT_RETRY, RETRY_STATUS, RetryPolicy, retry_after, retrying
from hub.manifest import HuggingFaceSource
from hub.progress import Reporter, tqdm_kwargs

__all__ = ["evict_hf_file", "fetch_hf"]


def _unreachable(rel: str, where: str, reason: str) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"Cannot reach the Hub for {rel} from {where}: {reason}. This does not pass by waiting, so "
        "it was not retried. To use only what is cached, set HUB_OFFLINE=1; to use a mirror, set "
        "HUB_HF_ENDPOINT or pass `hub pull --endpoint URL`.")


def _hf_one(src: HuggingFaceSource, rel: str, revision: str, *, cache: Cache, settings: Settings,
            force: bool, reporter: Reporter, retry: RetryPolicy, unreachable: str | None) -> Path:
    """One file through ``hf_hub_download``, mapping every failure to a hub error.

    :param unreachable: why the endpoint cannot be reached, if :func:`why_unreachable` found it so: then
        only huggingface_hub's cache is asked.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    from hub.api import version

    where = f"{src.repo} at revision {revision}"
    if unreachable is not None and force and not settings.offline:
        raise _unreachable(rel, where, unreachable)
    local_only = settings.offline or unreachable is not None

    def call() -> Path:
        return Path(hf_hub_download(
            src.repo, rel, revision=revision, repo_type=src.repo_type,
            cache_dir=str(cache.hf_dir), endpoint=settings.hf_endpoint,
            local_files_only=local_only, force_download=force and not local_only,
            library_name="backbone-hub", library_version=version(),
            **tqdm_kwargs(hf_hub_download, reporter, rel)))

    def refuse(exc: OSError, status: int | None) -> None:
        if isinstance(exc, hf_errors.LocalEntryNotFoundError):
            if settings.offline:
                raise OfflineError(f"{rel} from {where} is not cached and offline mode is on. "
                                   "Unset HUB_OFFLINE/HF_HUB_OFFLINE and run `hub pull`.") from exc
            if unreachable is not None:
                raise _unreachable(rel, where, unreachable) from exc
            raise SourceUnavailableError(
                f"Could not reach the Hub for {rel} from {where}, even after huggingface_hub's own "
                f"retries ({exc}). Check the network, or set HUB_HF_ENDPOINT (or pass --endpoint) "
                "to a mirror.") from exc
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise SourceUnavailableError(f"Revision {revision!r} does not exist in {src.repo} "
                                         f"(asked for {rel}). Fix the manifest's revision.") from exc
        if isinstance(exc, hf_errors.RepositoryNotFoundError):
            raise SourceUnavailableError(
                f"Repository {src.repo!r} was not found, or is gated (asked for {rel} at revision "
                f"{revision}). Check the repo id, or log in with `hf auth login`.") from exc
        if isinstance(exc, hf_errors.EntryNotFoundError):
            raise SourceUnavailableError(f"File {rel!r} does not exist in {where}. Fix the "
                                         "manifest's file name or revision.") from exc
        if status == 429:
            after = retry_after(exc)
            when = f" in {after:.0f} s" if after is not None else " later"
            raise SourceUnavailableError(
                f"The Hub rate-limited {rel} from {where} (429), even after waiting as it asked. "
                f"Try again{when}, or use a mirror (HUB_HF_ENDPOINT).") from exc
        if status is not None and status not in RETRY_STATUS:
            raise SourceUnavailableError(f"The Hub refused {rel} from {where} (HTTP {status}): "
                                         f"{exc}. Check access rights, or use a mirror.") from exc

    return retrying(call, name=rel, where=where, folder=cache.hf_dir, retry=retry,
                    reporter=reporter, refuse=refuse,
                    unreachable=lambda reason: _unreachable(rel, where, reason))


def _endpoint(settings: Settings) -> str:
    if settings.hf_endpoint is not None:
        return settings.hf_endpoint
    from huggingface_hub import constants

    return constants.ENDPOINT


def fetch_hf(src: HuggingFaceSource, extra: list[str], *, cache: Cache, settings: Settings,
             force: bool = False, revision: str | None = None, reporter: Reporter | None = None,
             retry: RetryPolicy | None = None) -> Fetched:
    """Download through huggingface_hub (its cache, locks and resume) at the pinned revision.

    :param revision: overrides the manifest's (the commit a lock record resolved earlier).
    :param force: download again even if huggingface_hub has the file.
    :raises OfflineError: offline and a file is not in huggingface_hub's cache.
    :raises SourceUnavailableError: the Hub (or mirror) could not deliver; names repo,
        revision and file. An endpoint whose name does not resolve or that refuses
        connections fails at once, naming HUB_OFFLINE and ``--endpoint``.
    :raises CacheError: the cache cannot be written (disk full: with bytes needed and free).
    """
    reporter = reporter or Reporter()
    retry = retry or DEFAULT_RETRY
    rev = revision or src.revision
    unreachable = None if settings.offline else why_unreachable(_endpoint(settings))
    paths: dict[str, Path] = {}
    for rel in [src.file, *(companion(src.file, e) for e in extra)]:
        reporter.file(rel)
        paths[rel] = _hf_one(src, rel, rev, cache=cache, settings=settings, force=force,
                             reporter=reporter, retry=retry, unreachable=unreachable)
    weights = paths.pop(src.file)
    commit = None  # huggingface_hub stores files under snapshots/<commit>/<path>
    for parent in weights.parents:
        if parent.parent.name == "snapshots":
            commit = parent.name
            break
    files = {e: paths[companion(src.file, e)] for e in extra}
    return Fetched(weights=weights, files=files, commit=commit, source=src.describe(),
                   in_hf_cache=True)


def evict_hf_file(path: Path, hf_root: Path) -> None:
    """Remove one file huggingface_hub cached (its snapshot link and the blob behind it).

    Used when its bytes were refused (wrong sha256, malformed), so that nothing known to
    be bad stays in the cache and the next pull downloads it afresh. Paths outside
    ``hf_root`` are never touched.
    """
    root = hf_root.resolve()
    targets = []
    if path.is_symlink():
        blob = path.resolve()
        if root in blob.parents:
            targets.append(blob)
    targets.append(path)
    for t in targets:
        absolute = t if t.is_absolute() else t.resolve()
        if root not in absolute.parents:
            continue
        t.unlink(missing_ok=True)
