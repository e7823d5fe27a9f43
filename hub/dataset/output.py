"""Where a dataset job's output lives: a local folder, or a prefix in an object store.

:class:`~hub.dataset.writer.ShardWriter` decides what to write; an output decides how:

* :class:`LocalOutput` (a folder): one job at a time through a lock file; every file written
  to a unique temporary name, fsynced and renamed into place (:func:`hub.atomic.write_atomic`);
  leftover temporary files of a killed run are deleted on the next open.
* :class:`StoreOutput` (``s3://``, ``gs://``, ``az://``...; :mod:`hub.dataset.store`): no
  rename, no lock file. A single PUT is atomic in every such store (an object appears whole
  or not at all; a multipart upload that was never completed is invisible), so a shard is
  written under its final name in one request, and with a *conditional create*, so a
  committed shard can never be replaced, not even by a driver that lost its lease. The
  manifest is written after each shard it lists (plain PUT: it is a summary the next run
  rebuilds from the shards). One job at a time: :class:`~hub.dataset.lease.Lease`.

Both have the same names and layout, so ``hub search`` and a rerun read either alike.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Final

from hub.atomic import write_atomic
from hub.dataset import store
from hub.errors import InputError, OutputError, StoreError

__all__ = ["COMPRESSION", "LocalOutput", "Output", "StoreOutput", "open_output"]

#: the shards' Parquet compression
COMPRESSION: Final = "zstd"


class Output(ABC):
    """The operations a :class:`~hub.dataset.writer.ShardWriter` needs."""

    #: the folder or URI, as messages name it
    label: str = ""

    @abstractmethod
    def prepare(self) -> list[str]:
        """Create the folder, take the writer's lock or lease; the names in it (not hidden)."""

    @abstractmethod
    def release(self, *, failing: bool = False) -> None:
        """Give up the lock or lease (``failing``: the job is stopping on an error)."""

    @abstractmethod
    def read_text(self, name: str) -> str:
        """``name`` as text."""

    @abstractmethod
    def parquet_file(self, name: str) -> Any:
        """A ``pyarrow.parquet.ParquetFile`` over ``name`` (its footer is read now)."""

    @abstractmethod
    def size(self, name: str) -> int:
        """Bytes in ``name``."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes:
        """All bytes of ``name``."""

    @abstractmethod
    def write_shard(self, name: str, table: Any) -> tuple[int, str]:
        """Commit a complete shard (a ``pyarrow.Table``, zstd Parquet) under ``name``; its size
        in bytes and sha256."""

    @abstractmethod
    def write_text(self, name: str, text: str) -> None:
        """Replace a summary file (manifest, errors) whole."""

    def append_text(self, name: str, text: str) -> bool:
        """Append to a file when the output can; False when it cannot (rewrite it instead)."""
        return False

    def path(self, name: str) -> str:
        """The full path or URI of ``name``, for messages."""
        return store.join(self.label, name)


class LocalOutput(Output):
    """A local folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.label = str(self.folder)
        self._lock: Any = None

    def prepare(self) -> list[str]:
        from filelock import FileLock, Timeout

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the path, a read-only parent, a full disk
            raise OutputError.from_os(self.folder, exc) from exc
        names = [p.name for p in self.folder.iterdir() if not p.name.startswith(".")]
        _check_dataset_folder(self.label, names)
        self._lock = FileLock(str(self.folder / ".lock"))
        try:
            self._lock.acquire(timeout=0)
        except Timeout as exc:
            raise InputError(f"{self.folder} is being written by another job right now; wait for "
                             "it to finish, or use another output folder.") from exc
        except OSError as exc:  # the lock file cannot be created: a read-only folder
            raise OutputError.from_os(self.folder, exc) from exc
        for stale in self.folder.glob(".*.tmp*"):  # hub.atomic's temporary names
            stale.unlink()
        return names

    def release(self, *, failing: bool = False) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def read_text(self, name: str) -> str:
        return (self.folder / name).read_text()

    def parquet_file(self, name: str) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.folder / name)

    def size(self, name: str) -> int:
        return (self.folder / name).stat().st_size

    def read_bytes(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def write_shard(self, name: str, table: Any) -> tuple[int, str]:
        import pyarrow.parquet as pq

        from hub.cache import sha256_file

        path = self.folder / name  # written straight to the temporary file: no copy in memory
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression=COMPRESSION),
                     make_parent=False)
        return path.stat().st_size, sha256_file(path)

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.folder / name, text, make_parent=False)

    def append_text(self, name: str, text: str) -> bool:
        with open(self.folder / name, "a") as f:
            f.write(text)
        return True


class StoreOutput(Output):
    """A prefix in an object store (see the module docstring)."""

    def __init__(self, uri: str) -> None:
        from hub.dataset.lease import Lease

        self.label = uri.rstrip("/")
        self.fs, inner = store.filesystem(self.label)
        self.root = inner.rstrip("/")
        self.lease = Lease(self.label)

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def prepare(self) -> list[str]:
        from hub.dataset.lease import LEASE_DIR

        names = [n for n in store.list_names(self.fs, self.root, self.label + "/")
                 if n and not n.startswith(".") and n != LEASE_DIR]
        _check_dataset_folder(self.label, names)
        try:
            self.lease.acquire()
        except FileNotFoundError as exc:  # the bucket (container) does not exist
            raise StoreError(f"Cannot write {self.label}: its bucket does not exist ({exc}). "
                             "Create the bucket first, or fix the URI.", uri=self.label) from exc
        except PermissionError as exc:
            raise StoreError(f"Cannot write {self.label}: permission denied ({exc}). Check the "
                             "credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) and their rights "
                             "on the bucket.", uri=self.label) from exc
        return names

    def release(self, *, failing: bool = False) -> None:
        self.lease.release(failing=failing)

    def read_text(self, name: str) -> str:
        key = self._key(name)
        data: bytes = store.retried(self.path(name), lambda: self.fs.cat_file(key))
        return data.decode()

    def parquet_file(self, name: str) -> Any:
        import io

        import pyarrow.parquet as pq

        return pq.ParquetFile(io.BytesIO(self.read_bytes(name)))

    def read_bytes(self, name: str) -> bytes:
        key = self._key(name)
        data: bytes = store.retried(self.path(name), lambda: self.fs.cat_file(key))
        return data

    def size(self, name: str) -> int:
        key = self._key(name)
        return int(store.retried(self.path(name), lambda: self.fs.size(key)))

    def write_shard(self, name: str, table: Any) -> tuple[int, str]:
        import hashlib

        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()  # one PUT of the whole shard: serialised in memory
        pq.write_table(table, sink, compression=COMPRESSION)
        data = sink.getvalue().to_pybytes()
        self.put_shard(name, data)
        return len(data), hashlib.sha256(data).hexdigest()

    def put_shard(self, name: str, data: bytes) -> None:
        """Create the object ``name`` with a conditional create, once the lease is checked.

        :raises StoreError: the object exists (another job committed it), or the job lost its
            lease.
        """
        self.lease.check()
        key = self._key(name)
        try:
            store.retried(self.path(name), lambda: self.fs.pipe_file(key, data, mode="create"),
                          action="write")
        except FileExistsError as exc:
            raise StoreError(f"{self.path(name)} was committed by another job while this one "
                             "held the lease; run again: the rerun adopts it.",
                             uri=self.path(name)) from exc

    def write_text(self, name: str, text: str) -> None:
        key = self._key(name)
        store.retried(self.path(name), lambda: self.fs.pipe_file(key, text.encode()),
                      action="write")


def _check_dataset_folder(label: str, names: list[str]) -> None:
    from hub.dataset.writer import MANIFEST

    if names and MANIFEST not in names:
        raise InputError(f"{label} is not empty ({', '.join(sorted(names)[:3])}...) and is not a "
                         "dataset output (no _manifest.json). Use an empty or new output folder.")


def open_output(out: str | os.PathLike[str]) -> Output:
    """The output for a folder path or a store URI."""
    text = os.fspath(out)
    return StoreOutput(text) if store.is_uri(text) else LocalOutput(text)
