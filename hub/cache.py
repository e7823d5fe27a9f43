"""The local weight store: verified safetensors, written atomically, with a lock record.

Layout under the cache root (``HUB_CACHE``)::

    <root>/
      huggingface/                     huggingface_hub's own cache (blobs, snapshots, refs, locks)
      models/<model>/<variant>/        one finished entry, appearing all at once by rename
        weights.safetensors            always safetensors, whatever the source format
        files/<path>                   companion files (config, tokenizer), by manifest path
        lock.json                      the lock record (see :class:`LockRecord`)
      tmp/                             staging folders; anything here is unfinished
      locks/<model>--<variant>.lock    inter-process locks (filelock)

An entry is staged in ``tmp/``, verified, and only then renamed into
``models/``: a pull that fails or is killed leaves the cache as it was. Loading
checks the record against the files (size and modification time, cheap);
:func:`verify_entry` re-hashes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hub.errors import CacheError

__all__ = ["Cache", "LockRecord", "sha256_file"]

RECORD_NAME = "lock.json"
WEIGHTS_NAME = "weights.safetensors"
FILES_DIR = "files"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FileRecord:
    sha256: str
    size: int
    mtime_ns: int


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
    def from_json(cls, data: dict) -> LockRecord:
        data = dict(data)
        data["weights"] = FileRecord(**data["weights"])
        data["files"] = {k: FileRecord(**v) for k, v in data.get("files", {}).items()}
        return cls(**data)


def _stat_record(path: Path, sha: str | None = None) -> FileRecord:
    st = path.stat()
    return FileRecord(sha256=sha or sha256_file(path), size=st.st_size, mtime_ns=st.st_mtime_ns)


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
        path = self.entry_dir(model, variant) / RECORD_NAME
        try:
            return LockRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError):
            return None  # a damaged record means a damaged entry: treated as absent, repaired by a pull

    def quick_check(self, record: LockRecord) -> list[str]:
        """Cheap checks (existence, size, mtime) of an entry against its record; problems found."""
        base = self.entry_dir(record.model, record.variant)
        items = [(WEIGHTS_NAME, base / WEIGHTS_NAME, record.weights)]
        items += [(k, base / FILES_DIR / k, v) for k, v in record.files.items()]
        problems = []
        for label, path, rec in items:
            try:
                st = path.stat()
            except FileNotFoundError:
                problems.append(f"{label}: missing")
                continue
            if st.st_size != rec.size:
                problems.append(f"{label}: size {st.st_size} != recorded {rec.size}")
            elif st.st_mtime_ns != rec.mtime_ns:
                problems.append(f"{label}: modified since it was pulled")
        return problems

    def full_check(self, record: LockRecord) -> list[str]:
        """Re-hash every file of an entry against its record; problems found."""
        problems = self.quick_check(record)
        if problems:
            return problems
        base = self.entry_dir(record.model, record.variant)
        if sha256_file(base / WEIGHTS_NAME) != record.weights.sha256:
            problems.append(f"{WEIGHTS_NAME}: sha256 differs from the record")
        for k, v in record.files.items():
            if sha256_file(base / FILES_DIR / k) != v.sha256:
                problems.append(f"{k}: sha256 differs from the record")
        return problems

    def entries(self) -> Iterator[LockRecord]:
        """Every finished entry with a readable record."""
        models = self.root / "models"
        if not models.is_dir():
            return
        for mdir in sorted(models.iterdir()):
            for vdir in sorted(p for p in mdir.iterdir() if p.is_dir()):
                rec = self.read_record(mdir.name, vdir.name)
                if rec is not None:
                    yield rec

    # ---- writing -----------------------------------------------------------------------------
    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"Cannot create {path} ({exc.strerror}). Point HUB_CACHE at a "
                             "writable folder.") from exc

    @contextmanager
    def lock(self, model: str, variant: str, timeout: float = 600.0) -> Iterator[None]:
        """Hold the inter-process lock of one entry."""
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
        path = self.root / "tmp" / f"stage-{uuid.uuid4().hex}"
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
        tmp_record = stage / (RECORD_NAME + ".tmp")
        tmp_record.write_text(json.dumps(asdict(record), indent=2, sort_keys=True))
        os.replace(tmp_record, stage / RECORD_NAME)
        _fsync_dir(stage)
        final = self.entry_dir(record.model, record.variant)
        self._mkdir(final.parent)
        old = None
        if final.exists():
            old = self.root / "tmp" / f"old-{uuid.uuid4().hex}"
            os.replace(final, old)
        try:
            os.replace(stage, final)
        except OSError as exc:
            if old is not None:
                os.replace(old, final)
            raise CacheError(f"Cannot move the pulled files into {final} ({exc.strerror}).") from exc
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return record

    def remove(self, model: str, variant: str | None = None) -> list[Path]:
        """Delete an entry (or every variant of a model); returns what was removed."""
        targets = [self.entry_dir(model, variant)] if variant else (
            sorted((self.root / "models" / model).glob("*")) if (self.root / "models" / model).is_dir()
            else [])
        removed = []
        for t in targets:
            if t.exists():
                shutil.rmtree(t)
                removed.append(t)
        return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds (Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; durability is best effort there
    finally:
        os.close(fd)


def place(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst``: a hard link when possible, else a copy (never a move)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src.resolve(), dst)
    except OSError:
        shutil.copyfile(src, dst)
