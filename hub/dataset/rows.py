"""The rows of a dataset's source: :class:`Reader` (an ordered, random-access list of rows),
:class:`Record` (one row) and :class:`Failure` (why a row gave no usable value).

Every reader (:mod:`hub.dataset.path_readers`, :mod:`hub.dataset.file_readers`,
:mod:`hub.dataset.tars`) is a :class:`Reader`; :func:`hub.dataset.readers.open_reader` picks one
for a source. How a raw value is read for a modality (:meth:`Reader._value`) is described in
:mod:`hub.dataset.readers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.dataset import store
from hub.errors import InputError

__all__ = ["GLOB_MAGIC", "Failure", "Reader", "Record", "fetch"]

#: the characters that make a path a glob pattern
GLOB_MAGIC = set("*?[")



@dataclass(frozen=True)
class Failure:
    """Why a row gave no usable value."""

    reason: str


@dataclass(frozen=True)
class Record:
    """One row: its position, its id and its raw value (or a :class:`Failure`)."""

    index: int
    id: str | int
    value: Any


class Reader(ABC):
    """An ordered, random-access list of rows.

    :param path: the folder, glob or file it reads.
    :param modality: ``"image"`` or ``"text"``: how values are read.
    """

    kind: str = ""
    #: ``"string"`` (paths) or ``"int64"`` (row numbers): the type of the ``id`` column.
    id_type: str = "int64"

    def __init__(self, path: str, modality: str, column: str | None = None) -> None:
        self.path = path
        self.modality = modality
        self.column = column
        self.digest = ""

    @abstractmethod
    def __len__(self) -> int:
        """Number of rows."""

    @abstractmethod
    def read(self, start: int, stop: int) -> list[Record]:
        """Rows ``start`` to ``stop - 1``."""

    def column_values(self, name: str) -> list[Any]:
        """The raw values of another column, one per row (a label column, say); ``None`` where
        a row has none.

        :raises InputError: the source has no columns (a folder, a glob, a text file), or no
            column ``name`` (the message lists the columns it has).
        """
        raise InputError(f"A {self.kind} source has no columns, so no {name!r} column: give a "
                         "JSONL, CSV or Parquet file.")

    def describe(self) -> dict[str, Any]:
        """What identifies the source read in a job's manifest (a changed source is a new job)."""
        return {"kind": self.kind, "path": self.path, "column": self.column, "rows": len(self),
                "id_type": self.id_type, "digest": self.digest}

    def _value(self, value: Any) -> Any:
        """Check one raw value for this modality; a :class:`Failure` when unusable."""
        if value is None:
            return Failure("the value is empty (null)")
        if self.modality == "text":
            if isinstance(value, (bytes, bytearray)):
                try:
                    return bytes(value).decode("utf-8")
                except UnicodeDecodeError as exc:
                    return Failure(f"text is not valid UTF-8 (at byte {exc.start})")
            if not isinstance(value, str):
                return Failure(f"expected text, got {type(value).__name__}")
            return value
        if isinstance(value, dict):  # {"bytes": ..., "path": ...}
            if value.get("bytes"):
                return bytes(value["bytes"])
            value = value.get("path")
            if not value:
                return Failure("the image struct has neither bytes nor a path")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return Failure("the image path is empty")
            if store.is_uri(value):
                return fetch(value)
            if store.is_uri(self.path):
                return fetch(store.join(store.parent(self.path), value))
            p = Path(value)
            return p if p.is_absolute() else Path(self.path).parent / p
        return Failure(f"expected an image path or image bytes, got {type(value).__name__}")

    def __repr__(self) -> str:
        col = f" column={self.column!r}" if self.column else ""
        return f"<{type(self).__name__} {self.path!r}{col} rows={len(self)}>"


def fetch(uri: str) -> bytes | Failure:
    """An image object's bytes (read in the worker that decodes it); a missing one is a bad item."""
    try:
        return store.read_bytes(uri)
    except (FileNotFoundError, IsADirectoryError) as exc:
        return Failure(f"no object {uri!r} ({type(exc).__name__})")
    except PermissionError as exc:
        return Failure(f"no permission to read {uri!r} ({exc})")

