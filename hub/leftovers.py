"""What killed pulls leave behind, and removing it without disturbing a pull that is running.

Staging folders in ``<cache>/tmp`` are named ``<kind>-<host>-<pid>-<id>`` by :func:`owned_name`;
one whose process is gone (same host) or that is over a day old is a leftover. huggingface_hub's
unfinished downloads (``blobs/*.incomplete``), and hub's own unfinished URL downloads
(``downloads/<key>/*.part``), are leftovers when nobody holds their download lock; a pull
resumes them, ``hub cache prune`` removes them.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

__all__ = ["hf_partials", "leftovers", "owned_name", "sweep", "url_partials"]

_STALE_SECONDS = 24 * 3600  # leftovers of unknown owners older than this are removed


def owned_name(kind: str) -> str:
    """A folder name that records which host and process made it."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) is not a liveness check there: rely on age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def leftovers(root: Path) -> list[Path]:
    """What killed processes left in ``tmp/``: folders whose owner is gone (same host), or
    older than a day (other hosts, unknown owners)."""
    tmp = root / "tmp"
    if not tmp.is_dir():
        return []
    host, now, out = socket.gethostname(), time.time(), []
    for p in sorted(tmp.iterdir()):
        parts = p.name.split("-")
        try:
            age = now - p.lstat().st_mtime
        except FileNotFoundError:
            continue
        if len(parts) >= 4 and parts[-2].isdigit() and "-".join(parts[1:-2]) == host:
            pid = int(parts[-2])
            if pid != os.getpid() and not _pid_alive(pid):
                out.append(p)
                continue
        if age > _STALE_SECONDS:
            out.append(p)
    return out


def sweep(root: Path) -> list[Path]:
    """Remove :func:`leftovers`; returns what was removed."""
    removed = []
    for p in leftovers(root):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        if not p.exists():
            removed.append(p)
    return removed


def hf_partials(root: Path) -> list[Path]:
    """huggingface_hub's unfinished downloads (``blobs/*.incomplete``) nobody is writing now."""
    hf = root / "huggingface"
    out = []
    for blob in sorted(hf.glob("*/blobs/*.incomplete")):
        repo_folder, etag = blob.parent.parent.name, blob.name.split(".")[0]
        if _nobody_holds(hf / ".locks" / repo_folder / f"{etag}.lock"):
            out.append(blob)
    return out


def _nobody_holds(lock_file: Path) -> bool:
    """True when no process holds ``lock_file`` (a download using it is not running)."""
    import filelock

    if not lock_file.exists():
        return True
    try:
        with filelock.FileLock(str(lock_file)).acquire(timeout=0):
            return True
    except filelock.Timeout:
        return False


def url_partials(root: Path) -> list[Path]:
    """hub's unfinished URL downloads (``downloads/<key>/**/*.part``) nobody is writing now."""
    return [part for part in sorted((root / "downloads").glob("*/**/*.part"))
            if _nobody_holds(part.with_name(part.name[: -len(".part")] + ".lock"))]
