"""Where weight bytes come from: a Hugging Face repo, a plain HTTPS URL, or an installed
Python distribution.

Each source kind has one fetcher returning local paths (:class:`Fetched`), not yet verified:
:mod:`hub.weights` checks sha256 before anything is used. Companion files are named relative
to the folder that holds the weights file.

================================  ==============================================================
module                            job
================================  ==============================================================
:mod:`hub.fetch.huggingface`      Hub repos through huggingface_hub (its cache, locks, resume)
:mod:`hub.fetch.url`              plain HTTPS URLs, mirrors via ``HUB_URL_MIRRORS``
:mod:`hub.fetch.distribution`     files inside an installed distribution (no network)
:mod:`hub.fetch.retry`            :class:`RetryPolicy` and the one retry loop of both downloaders
:mod:`hub.fetch.reach`            a host that cannot be reached at all fails at once, not retried
:mod:`hub.fetch.fetched`          :class:`Fetched`, what every fetcher hands back
================================  ==============================================================

Progress is reported to a :class:`hub.progress.Reporter`.
"""

from __future__ import annotations

from pathlib import Path

from hub.cache import Cache
from hub.config import Settings
from hub.errors import SourceUnavailableError
from hub.fetch.distribution import fetch_dist
from hub.fetch.fetched import Fetched
from hub.fetch.huggingface import evict_hf_file, fetch_hf
from hub.fetch.retry import DEFAULT_RETRY, RetryPolicy
from hub.fetch.url import DOWNLOADS_DIR, fetch_url, mirrored
from hub.manifest import DistributionSource, HuggingFaceSource, SavedSource, UrlSource
from hub.progress import Reporter

__all__ = ["DEFAULT_RETRY", "DOWNLOADS_DIR", "Fetched", "RetryPolicy", "discard", "evict_hf_file",
           "fetch", "fetch_dist", "fetch_hf", "fetch_url", "mirrored"]


def fetch(src: HuggingFaceSource | DistributionSource | UrlSource | SavedSource, extra: list[str], *,
          cache: Cache, settings: Settings, force: bool = False, revision: str | None = None,
          reporter: Reporter | None = None, retry: RetryPolicy | None = None) -> Fetched:
    """Fetch a source's weights and companion files to local paths, with the fetcher of its kind.

    :param extra: companion files, relative to the folder of the weights file.
    :param revision: for a Hub source, overrides the manifest's (a recorded commit).
    :param retry: how downloads are retried (default :data:`DEFAULT_RETRY`).
    """
    if isinstance(src, SavedSource):  # read in place by hub.saved, never through the cache
        raise SourceUnavailableError(f"{src.describe()} is a file beside a saved directory's "
                                     "manifest: load that directory with hub.load(DIRECTORY).")
    if isinstance(src, HuggingFaceSource):
        return fetch_hf(src, extra, cache=cache, settings=settings, force=force,
                        revision=revision, reporter=reporter, retry=retry)
    if isinstance(src, UrlSource):
        return fetch_url(src, extra, cache=cache, settings=settings, force=force,
                         reporter=reporter, retry=retry)
    return fetch_dist(src, extra, reporter=reporter)


def discard(fetched: Fetched, path: Path, cache: Cache) -> None:
    """Remove a fetched file hub may fetch again: a huggingface_hub cache file or a URL download.
    Installed files are never touched."""
    if fetched.in_hf_cache:
        evict_hf_file(path, cache.hf_dir)
    elif fetched.downloaded:
        root = (cache.root / DOWNLOADS_DIR).resolve()
        if root in path.resolve().parents:
            path.unlink(missing_ok=True)
