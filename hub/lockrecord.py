"""The lock record (``lock.json``) of a cache entry: what a finished pull recorded.

A record names the source and commit the bytes came from, their sha256 as the source served
them, and per stored file its sha256 with the stat data taken when that hash was computed.
Later loads compare the files' stat with it (:func:`unchanged_since_recorded`) instead of
re-hashing. :class:`hub.cache.Cache` decides where records live and when they are written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub.atomic import write_atomic

__all__ = ["RECORD_NAME", "FileRecord", "LockRecord", "stat_record", "unchanged_since_recorded",
           "write_record"]

#: the record's file name inside an entry folder
RECORD_NAME = "lock.json"


@dataclass
class FileRecord:
    """One stored file: its sha256, size and modification time when it was recorded."""

    sha256: str
    size: int
    mtime_ns: int
    #: inode change time and inode number when the hash was recorded. Any write to the file
    #: (even one that restores its mtime) moves ctime, which no user call can set back, so a
    #: file whose size, mtime, ctime and inode all still match was not changed since.
    ctime_ns: int | None = None
    ino: int | None = None


@dataclass
class LockRecord:
    """What a finished pull recorded; later loads are checked against it.

    :param source: the source the bytes came from (``hf://repo@rev/file`` or ``dist://...``).
    :param commit: the resolved Hub commit, when the source is a Hub repo.
    :param source_sha256: sha256 of the bytes as the source served them.
    :param pinned: whether the manifest pinned commit and sha256 (else they were recorded here).
    :param weights: the stored safetensors file.
    :param files: companion files by manifest path.
    """

    model: str
    variant: str
    format: str
    source: str
    commit: str | None
    source_sha256: str
    pinned: bool
    weights: FileRecord
    files: dict[str, FileRecord] = field(default_factory=dict)
    pulled_at: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LockRecord:
        data = dict(data)
        data["weights"] = FileRecord(**data["weights"])
        data["files"] = {k: FileRecord(**v) for k, v in data.get("files", {}).items()}
        return cls(**data)

    @classmethod
    def read(cls, path: Path) -> LockRecord | None:
        """The record in ``path``, or ``None`` if there is none or it is unreadable (a damaged
        record means a damaged entry: treated as absent, repaired by the next pull)."""
        try:
            return cls.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError):
            return None


def write_record(record: LockRecord, folder: Path) -> None:
    """Write ``record`` as ``folder/lock.json`` through a temporary file and one rename.

    :raises OutputError: the folder cannot be written (an :class:`OSError`; nothing is left).
    """
    write_atomic(folder / RECORD_NAME, json.dumps(asdict(record), indent=2, sort_keys=True),
                 make_parent=False)


def stat_record(sha: str, st: os.stat_result) -> FileRecord:
    """The record of a file whose sha256 is ``sha``, with ``st`` taken when it was computed."""
    return FileRecord(sha256=sha, size=st.st_size, mtime_ns=st.st_mtime_ns,
                      ctime_ns=st.st_ctime_ns, ino=st.st_ino)


def unchanged_since_recorded(st: os.stat_result, rec: FileRecord) -> bool:
    """True when a file's stat proves it was not written since its hash was recorded."""
    return (rec.ctime_ns is not None and st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns
            and st.st_ctime_ns == rec.ctime_ns and st.st_ino == rec.ino)
