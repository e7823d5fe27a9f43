"""Disk space: how much is free, and the error a full disk (or quota, or file-size limit) gives.

Every write into the cache that can fail for lack of space maps ``ENOSPC``, ``EFBIG`` and
``EDQUOT`` to one :class:`~hub.errors.CacheError` built here, naming the bytes needed and free
(and the process's ``ulimit -f`` when that is what stopped it).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from hub.errors import CacheError

__all__ = ["disk_full_error", "free_bytes", "is_disk_full"]

_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _fsize_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def is_disk_full(exc: BaseException) -> bool:
    """True for the OSErrors a full disk, a quota or a file-size limit raise."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def disk_full_error(folder: Path, what: str, exc: OSError | None = None,
                    needed: int | None = None) -> CacheError:
    """A :class:`CacheError` for a full disk, naming the bytes needed and free."""
    free = free_bytes(folder)
    need = f"needs {needed:,} bytes" if needed is not None else "needs more space"
    have = f"{free:,} bytes are free" if free is not None else "free space is unknown"
    limit = _fsize_limit()
    why = f" ({exc.strerror})" if exc is not None and exc.strerror else ""
    extra = ""
    if exc is not None and exc.errno == errno.EFBIG and limit is not None:
        extra = f"; this process may not write files over {limit:,} bytes (ulimit -f)"
    return CacheError(f"Out of space while {what}{why}: it {need}, {have} in {folder}{extra}. "
                      "Nothing half-written was kept. Free some space (`hub cache prune`) or point "
                      "HUB_CACHE at a larger disk, then pull again.")
