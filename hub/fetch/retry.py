"""Retrying one download: which failures are worth another try, how often, and how long to wait.

:func:`retrying` runs a download until it succeeds or fails for good, for the Hub
(:mod:`hub.fetch.huggingface`) and URL (:mod:`hub.fetch.url`) fetchers alike. Each failure is
sorted in this order:

1. the host cannot be reached at all -- its name does not resolve, or it refuses the connection
   (:func:`hub.fetch.reach.unreachable_reason`): not a passing fault, so raised at once with
   what to do (work offline, or use a mirror);
2. what the source itself refuses (a missing repo, a 404...): the fetcher's ``refuse`` raises;
3. a full disk, an unwritable cache: :class:`~hub.errors.CacheError` at once;
4. a 408/5xx answer (429 for URLs) or a transport failure (a connection reset, a timeout):
   retried at most :attr:`RetryPolicy.attempts` times, waiting ``base_wait`` doubled each
   time, or the server's ``Retry-After``, never more than ``max_wait``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.diskspace import disk_full_error, is_disk_full
from hub.errors import CacheError, SourceUnavailableError
from hub.fetch.reach import unreachable_reason
from hub.progress import Reporter

__all__ = ["DEFAULT_RETRY", "RETRY_STATUS", "RetryPolicy", "retry_after", "retrying", "status_of"]

log = logging.getLogger("hub.fetch")

#: HTTP answers worth another try
RETRY_STATUS = frozenset({408, 500, 502, 503, 504})
_TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a download of one file is retried.

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


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of the response an error carries, if any."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` seconds of the response an error carries, if any."""
    response = getattr(exc, "response", None)
    raw = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    if raw is None or not str(raw).strip().isdigit():
        return None
    return float(str(raw).strip())


def _is_transport(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES


def retrying(call: Callable[[], Path], *, name: str, where: str, folder: Path,
             retry: RetryPolicy, reporter: Reporter,
             refuse: Callable[[OSError, int | None], None],
             unreachable: Callable[[str], SourceUnavailableError]) -> Path:
    """Run one download ``call`` until it succeeds or fails for good (see the module's order).

    :param name: the file, for messages and the reporter.
    :param where: the repo and revision, or the address, for messages.
    :param folder: where the bytes are written (named by disk-full and unwritable errors).
    :param refuse: ``refuse(exc, status)`` raises the source's own error for what must not be
        retried, and returns for the rest.
    :param unreachable: the source's error for a host that cannot be reached, given the reason.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except OSError as exc:
            status = status_of(exc)
            cause = unreachable_reason(exc) if status is None else None
            if cause is not None:
                raise unreachable(cause) from exc
            refuse(exc, status)
            if status is None and is_disk_full(exc):
                raise disk_full_error(folder, f"downloading {name} from {where}", exc) from exc
            if status is None and not _is_transport(exc):
                raise CacheError(f"Cannot write {name} from {where} into {folder} "
                                 f"({exc}). Point HUB_CACHE at a writable folder.") from exc
            reason = f"HTTP {status}" if status is not None else f"{type(exc).__name__}: {exc}"
            wait = _wait(exc, attempt, retry, name, where, reason)
        except Exception as exc:  # httpx transport errors are not OSErrors
            cause = unreachable_reason(exc)  # also under huggingface_hub's ValueError of a --force
            if cause is not None:
                raise unreachable(cause) from exc
            if not _is_transport(exc):
                raise
            reason = f"{type(exc).__name__}: {exc}"
            wait = _wait(exc, attempt, retry, name, where, reason)
        reporter.retry(name, attempt, wait, reason)
        log.warning("%s from %s failed (%s); try %d of %d in %.1f s", name, where, reason,
                    attempt + 1, retry.attempts, wait)
        time.sleep(wait)


def _wait(exc: BaseException, attempt: int, retry: RetryPolicy, rel: str, where: str,
          reason: str) -> float:
    """Seconds to wait before the next try, or raise when the tries are spent."""
    if attempt >= retry.attempts:
        raise SourceUnavailableError(
            f"Downloading {rel} from {where} failed {attempt} times (last: {reason}). Nothing "
            "partial was kept; run the pull again later, or use a mirror (HUB_HF_ENDPOINT).") from exc
    after = retry_after(exc)
    if after is not None and after > retry.max_wait:
        raise SourceUnavailableError(
            f"Downloading {rel} from {where} failed ({reason}) and the server asks to wait "
            f"{after:.0f} s, more than the {retry.max_wait:.0f} s hub waits. Run the pull again "
            "then.") from exc
    if after is not None:
        return after
    return min(retry.max_wait, retry.base_wait * 2.0 ** (attempt - 1))
