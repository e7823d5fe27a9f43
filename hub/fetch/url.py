"""URL sources: publishers without a Hub repo, such as torchvision's ``download.pytorch.org``.

Fetched with huggingface_hub's own HTTP download (its session, proxies and resume) into
``<HUB_CACHE>/downloads/<key>/<file>``, under a file lock, with the retry policy of
:mod:`hub.fetch.retry`; an unfinished ``.part`` file is resumed by the next pull, and the
finished file is removed once its bytes are verified and stored (or refused).
``HUB_URL_MIRRORS`` redirects them to a mirror. No Hub token is ever sent to such a host.
A host whose name does not resolve or that refuses connections fails at once
(:func:`hub.fetch.reach.why_unreachable`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hub.cache import Cache
from hub.config import Settings
from hub.errors import CacheError, HubError, OfflineError, SourceUnavailableError
from hub.fetch.fetched import Fetched
from hub.fetch.reach import why_unreachable
from hub.fetch.retry import DEFAULT_RETRY, RETRY_STATUS, RetryPolicy, retrying
from hub.manifest import UrlSource
from hub.progress import Reporter, tqdm_kwargs

__all__ = ["DOWNLOADS_DIR", "fetch_url", "mirrored"]

#: folder under the cache root where URL sources are downloaded (and removed once stored)
DOWNLOADS_DIR = "downloads"


def mirrored(url: str, settings: Settings) -> str:
    """The address a URL source is fetched from: its first matching ``HUB_URL_MIRRORS``
    prefix replaced, or the URL itself."""
    for prefix, replacement in settings.url_mirrors:
        if url.startswith(prefix):
            return replacement + url[len(prefix):]
    return url


def _unreachable(name: str, where: str, reason: str) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"Cannot reach {where} for {name}: {reason}. This does not pass by waiting, so it was not "
        "retried. To use only what is cached, set HUB_OFFLINE=1; to fetch from a mirror, set "
        "HUB_URL_MIRRORS=PREFIX=REPLACEMENT.")


def _url_one(url: str, dest: Path, *, settings: Settings, force: bool, reporter: Reporter,
             retry: RetryPolicy) -> Path:
    """Download one URL to ``dest`` (resuming a ``.part`` file), mapping failures to hub errors."""
    import filelock
    from huggingface_hub.file_download import http_get

    from hub.api import version

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
        unreachable = why_unreachable(actual)
        if unreachable is not None:  # before any byte: a .part of an earlier pull stays to resume
            raise _unreachable(name, where, unreachable)

        def call() -> Path:
            with open(part, "ab") as fh:
                http_get(actual, fh, resume_size=part.stat().st_size, displayed_filename=name,
                         headers={"user-agent": f"backbone-hub/{version()}"},
                         **tqdm_kwargs(http_get, reporter, name))
            os.replace(part, dest)
            return dest

        def refuse(exc: OSError, status: int | None) -> None:
            if status == 416:  # the partial file does not fit the server's: start over
                part.unlink(missing_ok=True)
            elif status is not None and status not in RETRY_STATUS | {429}:
                raise SourceUnavailableError(
                    f"{where} answered HTTP {status}. Check the manifest's url, or set "
                    "HUB_URL_MIRRORS to a mirror that serves it.") from exc

        try:
            return retrying(call, name=name, where=where, folder=dest.parent, retry=retry,
                            reporter=reporter, refuse=refuse,
                            unreachable=lambda reason: _unreachable(name, where, reason))
        except HubError:  # failed for good: keep no partial file (a killed process may, to resume)
            part.unlink(missing_ok=True)
            raise


def fetch_url(src: UrlSource, extra: list[str], *, cache: Cache, settings: Settings,
              force: bool = False, reporter: Reporter | None = None,
              retry: RetryPolicy | None = None) -> Fetched:
    """Download a URL source (and companions next to it) into ``<cache>/downloads``.

    :raises OfflineError: offline mode is on (URL downloads are never kept once stored).
    :raises SourceUnavailableError: the server (or mirror) could not deliver; names the URL. A
        host whose name does not resolve or that refuses connections fails at once, naming
        HUB_OFFLINE and HUB_URL_MIRRORS.
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
