"""The local weight store: verified safetensors, written atomically, with a lock record.

Layout under the cache root (``HUB_CACHE``)::

    <root>/
      huggingface/                     huggingface_hub's own cache (blobs, snapshots, refs, locks)
      models/<model>/<variant>/        one finished entry, appearing all at once by rename
        weights.safetensors            always safetensors, whatever the source format
        files/<path>                   companion files (config, tokenizer), by manifest path
        lock.json                      the lock record (:mod:`hub.lockrecord`)
        last_used                      touched on each load when the cache is writable
      tmp/                             staging folders (``stage-<host>-<pid>-<id>``); unfinished
      locks/<model>--<variant>.lock    inter-process locks (filelock)

An entry is staged in ``tmp/``, verified, and only then renamed into
``models/``: a pull that fails or is killed leaves the entries as they were, and
:func:`hub.leftovers.sweep` removes what a killed process left in ``tmp/``. Loading
checks the record against the files (size and modification time, cheap);
:meth:`Cache.full_check` re-hashes everything (``hub verify``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.atomic import fsync_dir, replace_dir
from hub.diskspace import disk_full_error, free_bytes, is_disk_full
from hub.errors import CacheError
from hub.leftovers import owned_name
from hub.lockrecord import (
    RECORD_NAME,
    FileRecord,
    LockRecord,
    stat_record,
    unchanged_since_recorded,
    write_record,
)

log = logging.getLogger("hub.cache")

__all__ = ["Cache", "EntryState", "place", "sha256_file", "sha256_known", "tree_size"]

WEIGHTS_NAME = "weights.safetensors"
FILES_DIR = "files"
USED_NAME = "last_used"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


_HASHED: dict[tuple[int, int, int, int, int], str] = {}


def sha256_known(path: Path) -> str:
    """sha256 of a file, remembered for this process while its inode, size, mtime and ctime stay
    the same (a write moves ctime, whatever the mtime is set back to). Loading one backbone twice
    hashes it once, and a directory that ``net.save`` wrote and hashed is not read again by
    ``hub.load`` in the same process (renaming its folder into place keeps each file's inode,
    mtime and ctime)."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


@dataclass(frozen=True)
class EntryState:
    """A folder under ``models/``: its record, or ``None`` when the record is missing or unreadable."""

    model: str
    variant: str
    path: Path
    record: LockRecord | None


def _stat_record(path: Path, sha: str | None = None) -> FileRecord:
    """The record of ``path`` with its stat now, hashing it unless ``sha`` is known."""
    return stat_record(sha or sha256_file(path), path.stat())


def tree_size(path: Path) -> int:
    """Bytes of a file, or of the regular files under a folder (links are not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class Cache:
    """The store under one root folder. Creating it writes nothing."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- paths -------------------------------------------------------------------------------
    @property
    def hf_dir(self) -> Path:
        return self.root / "huggingface"

    def entry_dir(self, model: str, variant: str) -> Path:
        return self.root / "models" / model / variant

    def weights_path(self, model: str, variant: str) -> Path:
        return self.entry_dir(model, variant) / WEIGHTS_NAME

    # ---- records -----------------------------------------------------------------------------
    def read_record(self, model: str, variant: str) -> LockRecord | None:
        """The lock record of a finished entry, or ``None`` if there is none or it is unreadable."""
        return LockRecord.read(self.entry_dir(model, variant) / RECORD_NAME)

    def _present(self, record: LockRecord,
                 problems: list[str]) -> Iterator[tuple[str, Path, FileRecord, os.stat_result]]:
        """Each recorded file that exists with its recorded size; the others go to ``problems``."""
        base = self.entry_dir(record.model, record.variant)
        items = [(WEIGHTS_NAME, base / WEIGHTS_NAME, record.weights)]
        items += [(k, base / FILES_DIR / k, v) for k, v in record.files.items()]
        for label, path, rec in items:
            try:
                st = path.stat()
            except FileNotFoundError:
                problems.append(f"{label}: missing")
                continue
            if st.st_size != rec.size:
                problems.append(f"{label}: size {st.st_size} != recorded {rec.size}")
                continue
            yield label, path, rec, st

    def quick_check(self, record: LockRecord) -> list[str]:
        """Cheap checks (existence, size, mtime) of an entry against its record; problems found."""
        problems: list[str] = []
        for label, _, rec, st in self._present(record, problems):
            if st.st_mtime_ns != rec.mtime_ns:
                problems.append(f"{label}: modified since it was pulled")
        return problems

    def full_check(self, record: LockRecord, *, remember: bool = False) -> list[str]:
        """Re-hash every file of an entry against its record; problems found.

        :param remember: trust files whose stat proves them unwritten since their hash was
            recorded (:func:`unchanged_since_recorded`), and reuse hashes this process computed
            for the same unchanged files (see :func:`sha256_known`); ``hub verify`` always reads
            every byte. A file that had to be re-hashed because its record predates the stat
            fields (an entry pulled by an older version) gets them recorded, when the cache is
            writable, so that later processes trust it without reading it again.
        """
        digest = sha256_known if remember else sha256_file
        problems: list[str] = []
        verified: dict[str, os.stat_result] = {}
        for label, path, rec, st in self._present(record, problems):
            if remember and unchanged_since_recorded(st, rec):
                continue
            if digest(path) != rec.sha256:
                problems.append(f"{label}: sha256 differs from the record")
            elif rec.ctime_ns is None:
                verified[label] = st
        if remember and verified and not problems:
            self._record_stats(record, verified)
        return problems

    def _record_stats(self, record: LockRecord, verified: dict[str, os.stat_result]) -> None:
        """Add stat fields to an old record for files just re-hashed, if none changed meanwhile.

        Skipped without error in a cache this process cannot write: the stat fields only save
        later processes a re-hash, and a read-only cache is a supported way to share weights.
        """
        base = self.entry_dir(record.model, record.variant)
        if not os.access(base, os.W_OK):
            return
        fresh = dict(record.files)
        weights = record.weights
        for label, before in verified.items():
            path = base / WEIGHTS_NAME if label == WEIGHTS_NAME else base / FILES_DIR / label
            now = path.stat()
            if (now.st_size, now.st_mtime_ns, now.st_ctime_ns, now.st_ino) != (
                    before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino):
                return  # written while it was hashed: leave the record as it was
            old = weights if label == WEIGHTS_NAME else fresh[label]
            rec = stat_record(old.sha256, now)  # the stat just compared, not a new one
            if label == WEIGHTS_NAME:
                weights = rec
            else:
                fresh[label] = rec
        upgraded = LockRecord(**{**asdict(record), "weights": weights, "files": fresh})
        try:
            write_record(upgraded, base)
        except OSError as exc:
            log.debug("could not record stat fields in %s (%s); the next load re-hashes", base, exc)
            return
        record.weights, record.files = weights, fresh

    def scan(self) -> list[EntryState]:
        """Every folder under ``models/<model>/<variant>``, with its record if readable."""
        models = self.root / "models"
        if not models.is_dir():
            return []
        out = []
        for mdir in sorted(p for p in models.iterdir() if p.is_dir()):
            for vdir in sorted(p for p in mdir.iterdir() if p.is_dir()):
                out.append(EntryState(mdir.name, vdir.name, vdir,
                                      self.read_record(mdir.name, vdir.name)))
        return out

    def entries(self) -> Iterator[LockRecord]:
        """Every finished entry with a readable record."""
        for state in self.scan():
            if state.record is not None:
                yield state.record

    def size(self, model: str, variant: str) -> int:
        """Bytes an entry occupies (weights, companion files, record)."""
        path = self.entry_dir(model, variant)
        return tree_size(path) if path.exists() else 0

    def last_used(self, model: str, variant: str) -> float | None:
        """When the entry was last loaded (or pulled), as a POSIX timestamp."""
        base = self.entry_dir(model, variant)
        for name in (USED_NAME, RECORD_NAME):
            try:
                return (base / name).stat().st_mtime
            except FileNotFoundError:
                continue
        return None

    def touch(self, model: str, variant: str) -> None:
        """Note that an entry was used; does nothing in a cache this process cannot write."""
        base = self.entry_dir(model, variant)
        if not os.access(base, os.W_OK):
            return
        marker = base / USED_NAME
        try:
            marker.touch()
        except OSError:
            return  # the use time is a convenience for `hub cache ls`; loading must not fail on it

    # ---- writing -----------------------------------------------------------------------------
    def require_writable(self, what: str) -> None:
        """Raise a :class:`CacheError` now if ``what`` would need to write and cannot."""
        p = self.root
        while not p.exists() and p != p.parent:
            p = p.parent
        if not os.access(p, os.W_OK | os.X_OK):
            raise CacheError(f"The cache {self.root} is read-only for this process, and {what} "
                             "would need to write to it. Pull it into a writable cache first "
                             "(`HUB_CACHE=<writable dir> hub pull ...`), or point HUB_CACHE there.")

    def require_space(self, needed: int, what: str) -> None:
        """Raise a :class:`CacheError` if the cache's disk has less than ``needed`` bytes free."""
        free = free_bytes(self.root)
        if free is not None and free < needed:
            raise disk_full_error(self.root, what, needed=needed)

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"Cannot create {path} ({exc.strerror}). Point HUB_CACHE at a "
                             "writable folder.") from exc

    @contextmanager
    def lock(self, model: str, variant: str, timeout: float = 600.0) -> Iterator[None]:
        """Hold the inter-process lock of one entry (threads of one process exclude each other too)."""
        import filelock

        self._mkdir(self.root / "locks")
        lock = filelock.FileLock(str(self.root / "locks" / f"{model}--{variant}.lock"))
        try:
            with lock.acquire(timeout=timeout):
                yield
        except filelock.Timeout as exc:
            raise CacheError(f"Another process has held the cache lock for {model}/{variant} for "
                             f"over {timeout:.0f}s. If none is running, delete {lock.lock_file}.") from exc

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder under ``tmp/``, removed on exit whatever happens."""
        self._mkdir(self.root / "tmp")
        path = self.root / "tmp" / owned_name("stage")
        self._mkdir(path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def commit(self, stage: Path, record: LockRecord) -> LockRecord:
        """Record the staged files and move the stage into place in one rename.

        The stage must hold ``weights.safetensors`` and ``files/<path>`` for each
        companion file already named in ``record.files``; their stat data is
        recorded here. An existing entry is replaced (moved aside, then deleted).
        """
        record.weights = _stat_record(stage / WEIGHTS_NAME, record.weights.sha256 or None)
        record.files = {k: _stat_record(stage / FILES_DIR / k, v.sha256 or None)
                        for k, v in record.files.items()}
        record.pulled_at = time.time()
        try:
            write_record(record, stage)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(self.root, "writing the lock record", exc) from exc
            raise CacheError(f"Cannot write the lock record in {stage} ({exc.strerror}).") from exc
        fsync_dir(stage)
        final = self.entry_dir(record.model, record.variant)
        self._mkdir(final.parent)
        try:
            replace_dir(stage, final, aside=self.root / "tmp" / owned_name("old"))
        except OSError as exc:
            raise CacheError(f"Cannot move the pulled files into {final} ({exc.strerror}).") from exc
        return record

    def remove(self, model: str, variant: str | None = None) -> list[Path]:
        """Delete an entry (or every variant of a model); returns what was removed.

        Each entry is first renamed into ``tmp/`` (one atomic step), then deleted.
        """
        mdir = self.root / "models" / model
        targets = [self.entry_dir(model, variant)] if variant else (
            sorted(p for p in mdir.iterdir() if p.is_dir()) if mdir.is_dir() else [])
        removed = []
        for t in targets:
            if not t.exists():
                continue
            self._mkdir(self.root / "tmp")
            doomed = self.root / "tmp" / owned_name("old")
            try:
                os.replace(t, doomed)
            except OSError as exc:
                raise CacheError(f"Cannot remove {t} ({exc.strerror}).") from exc
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(t)
        if mdir.is_dir() and not any(mdir.iterdir()):
            mdir.rmdir()
        return removed


def place(src: Path, dst: Path, *, link: bool = False) -> None:
    """Put ``src``'s bytes at ``dst``: a hard link if ``link`` and possible, else a copy.

    Links are only for files the cache owns (huggingface_hub's blobs): a file of an
    installed distribution is always copied, so damage to one never reaches the other.

    :raises CacheError: the disk is full (with bytes needed and free) or not writable.
    """
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src.resolve(), dst)
                return
            except OSError:
                pass  # another filesystem, or links unsupported: copy instead
        shutil.copyfile(src, dst)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(dst.parent, f"storing {src.name}", exc,
                                  needed=src.stat().st_size) from exc
        raise CacheError(f"Cannot store {src.name} at {dst} ({exc.strerror}). Point HUB_CACHE at "
                         "a writable folder.") from exc
