"""What this machine is, and the records measured on it.

Speed depends on the hardware, so anything hub measures (the ``dtype="auto"`` decision,
``hub bench``, ``hub probe``) is stored per machine under the cache root::

    <HUB_CACHE>/machines/<machine_id>/<kind>.json      {"machine": {...}, "records": {key: record}}

:func:`machine_info` describes the machine from the operating system alone (no torch:
``hub list`` and ``hub info`` read measurements without importing it);
:func:`machine_id` is a short stable hash of the parts that decide speed (CPU model,
its matrix-unit flags, core count, architecture), not of the host name, so that a
fresh machine of the same kind finds the records of its twins and a different CPU
never reuses them. :func:`write_record` replaces one record atomically under a file
lock; :func:`read_records` returns a kind's records (empty when nothing was measured).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from hub.atomic import write_atomic
from hub.config import get_settings
from hub.errors import CacheError

__all__ = ["machine_id", "machine_info", "read_records", "records_path", "write_record"]

#: CPU flags that change which precision runs fastest (native bf16/fp16/int8 matrix units).
SPEED_FLAGS = ("amx_bf16", "amx_fp16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16",
               "avx512_vnni", "avx512f", "avx2", "fma")


def _cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and flags from /proc/cpuinfo (empty where there is none)."""
    model, flags = "", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), flags


def machine_info() -> dict[str, Any]:
    """The machine as it matters for speed: CPU model, speed-relevant flags, cores, OS.

    :returns: ``{"cpu": str, "cpu_flags": [str], "cores": int, "arch": str, "os": str}``.
    """
    model, flags = _cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"cpu": model, "cpu_flags": sorted(f for f in SPEED_FLAGS if f in flags), "cores": cores,
            "arch": platform.machine(), "os": platform.system()}


def machine_id(info: dict[str, Any] | None = None) -> str:
    """A 12-hex-digit id of this machine's speed-relevant description (:func:`machine_info`)."""
    info = info or machine_info()
    key = json.dumps({k: info[k] for k in ("cpu", "cpu_flags", "cores", "arch")}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def records_path(kind: str, cache_dir: Path | None = None) -> Path:
    """Where this machine's records of ``kind`` (``"bench"``, ``"probe"``, ``"precision"``) live."""
    root = cache_dir or get_settings().cache_dir
    return root / "machines" / machine_id() / f"{kind}.json"


def read_records(kind: str, cache_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """This machine's records of ``kind``, by key; ``{}`` when none were written.

    :raises CacheError: the file exists but is not a records file (it says which file to delete).
    """
    path = records_path(kind, cache_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path} is not readable JSON ({exc}). Delete it; it is re-measured.") from exc
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, dict):
        raise CacheError(f"{path} has no 'records' object. Delete it; it is re-measured.")
    return records


def write_record(kind: str, key: str, record: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """Store ``record`` (JSON-serialisable) as this machine's ``kind`` record ``key``.

    Read-modify-write under a file lock, replaced in one rename, so concurrent writers
    keep each other's records and a reader never sees half a file.

    :returns: the records file.
    :raises CacheError: the cache directory cannot be written.
    """
    from filelock import FileLock

    path = records_path(kind, cache_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            records = read_records(kind, cache_dir)
            records[key] = record
            write_atomic(path, json.dumps({"machine": machine_info(), "records": records},
                                          indent=1, sort_keys=True))
    except OSError as exc:
        raise CacheError(f"cannot write {path} ({exc}). Check that HUB_CACHE is writable.") from exc
    return path
