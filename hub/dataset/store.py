"""Files and objects named by URI (``s3://``, ``gs://``, ``az://``, ``abfs://``, ``hf://``), through fsspec.

A dataset's source and output may be a local path or a URI. Everything the dataset modules
read or write outside the local filesystem goes through this module:

* :func:`is_uri` tells the two apart (``file://`` and plain paths are local);
* :func:`filesystem` opens the fsspec filesystem of a URI, importing its package through
  :func:`hub.deps.require` (``s3`` -> s3fs, extra ``s3``; ``gs`` -> gcsfs, extra ``gcs``;
  ``az``/``abfs`` -> adlfs, extra ``azure``; ``hf`` -> huggingface_hub's ``HfFileSystem``,
  already a dependency). Credentials and endpoints come from each library's standard
  environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``,
  ``AZURE_STORAGE_CONNECTION_STRING``, ``HF_TOKEN``...): nothing new to configure;
* :func:`retried` runs one store operation, retrying what looks transient (a throttled
  request, a dropped or refused connection, a timeout) with exponential backoff
  (``HUB_STORE_RETRIES`` tries, ``HUB_STORE_BACKOFF`` seconds doubled each time), then raises
  :class:`~hub.errors.StoreError` naming the object. A missing object, a refused permission or a
  failed precondition are answers, not faults: they are raised at once.
* :func:`read_bytes`, :func:`read_range`, :func:`size`, :func:`join`, :func:`parent` work on
  either kind of path, so readers need one code path.

fsspec filesystems pickle, so a reader holding a URI travels to DataLoader workers and Ray
tasks, which open their own connections.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hub.deps import require
from hub.errors import HubError, StoreError

__all__ = ["SCHEMES", "filesystem", "is_uri", "join", "parent", "read_bytes", "read_range",
           "retried", "size"]

T = TypeVar("T")

#: scheme -> (module to import, backbone-hub extra that installs it)
SCHEMES: dict[str, tuple[str, str | None]] = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
    "hf": ("huggingface_hub", None),
    "memory": ("fsspec", None),
}

#: What a store answers, rather than fails with: never retried.
_ANSWERS: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError,
    HubError, ValueError, TypeError, KeyError)


def scheme(path: str) -> str:
    """The URI scheme of ``path`` (lower case), or ``""`` for a local path."""
    head, sep, _ = path.partition("://")
    return head.lower() if sep and head.isidentifier() else ""


def is_uri(path: str | os.PathLike[str]) -> bool:
    """True for a store URI (``s3://bucket/key``); False for a local path or ``file://``."""
    return scheme(os.fspath(path)) not in ("", "file")


def filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``uri`` and the path inside it (``bucket/key`` for S3).

    :raises DependencyError: the store's package is not installed (names the extra).
    :raises InputError: the scheme is not a store fsspec knows.
    """
    from hub.errors import InputError

    name = scheme(uri)
    module, extra = SCHEMES.get(name, ("fsspec", None))
    require(module, extra=extra, purpose=f"{name}:// sources and outputs")
    fsspec = require("fsspec", extra=None, purpose=f"{name}:// sources and outputs")
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as exc:
        raise InputError(f"{uri!r}: no filesystem for {name}:// ({exc}). Use s3://, gs://, az://, "
                         "abfs://, hf:// or a local path.") from exc
    return fs, str(path)


def _delays() -> tuple[int, float]:
    from hub.config import store_backoff, store_retries

    return store_retries(), store_backoff()


def retried(what: str, op: Callable[[], T], *, action: str = "read") -> T:
    """Run ``op`` (one request about the object ``what``), retrying transient faults.

    :param action: ``"read"`` or ``"write"``, for the message.
    :raises StoreError: the store kept failing after the retries (names ``what``).
    """
    tries, delay = _delays()
    for attempt in range(1, tries + 1):
        try:
            return op()
        except _ANSWERS:
            raise
        except Exception as exc:  # a transient fault, by elimination: retried, then typed
            if attempt == tries:
                raise StoreError(
                    f"Cannot {action} {what}: the store failed {tries} times "
                    f"({type(exc).__name__}: {exc}). Check that the store is reachable and the "
                    "credentials and endpoint (AWS_ENDPOINT_URL, ...) are right, then run again: "
                    "a dataset job resumes from its committed shards.", uri=what) from exc
            time.sleep(delay * 2 ** (attempt - 1))
    raise StoreError(f"Cannot {action} {what}: HUB_STORE_RETRIES is 0.", uri=what)  # pragma: no cover


def read_bytes(path: str) -> bytes:
    """All bytes of a local file or a store object."""
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = filesystem(path)
    data: bytes = retried(path, lambda: fs.cat_file(inner))
    return data


def read_range(path: str, start: int, stop: int) -> bytes:
    """Bytes ``start`` to ``stop - 1`` of a local file or a store object (one ranged request)."""
    if not is_uri(path):
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(stop - start)
    fs, inner = filesystem(path)
    data: bytes = retried(path, lambda: fs.cat_file(inner, start=start, end=stop))
    return data


def size(path: str) -> int:
    """The size in bytes of a local file or a store object."""
    if not is_uri(path):
        return os.path.getsize(path)
    fs, inner = filesystem(path)
    return int(retried(path, lambda: fs.size(inner)))


def list_names(fs: Any, folder: str, what: str) -> list[str]:
    """The names (last path part) of what ``fs`` holds directly under ``folder``, listed afresh
    (the filesystem's listing cache dropped first: another process may have written since), with
    retries (:func:`retried`; ``what`` names the folder in errors); ``[]`` when there is none."""
    def listing() -> list[str]:
        fs.invalidate_cache(folder)
        try:
            return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    return retried(what, listing)


def join(base: str, *parts: str) -> str:
    """``base`` joined with relative ``parts`` (``/`` for URIs, the OS's rule for paths)."""
    if is_uri(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def parent(path: str) -> str:
    """The folder (prefix) holding ``path``."""
    if is_uri(path):
        head, _, rest = path.partition("://")
        return f"{head}://{posixpath.dirname(rest.rstrip('/'))}"
    return os.path.dirname(path)
