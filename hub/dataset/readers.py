"""Readers of a dataset's source: a folder, a glob, a text file, JSONL, CSV or Parquet.

A :class:`Reader` is an ordered, random-access list of rows. Row ``i`` always
means the same item, so a job can be cut into fixed row ranges (shards) and
resumed. :meth:`Reader.read` returns :class:`Record` objects for a range and is
called in worker processes, so readers are small and picklable: a folder keeps
its sorted path list, a text or JSONL file an array of line offsets, a Parquet
file only its row-group sizes (each worker opens the file itself).

Ids: a folder or glob item is named by its path relative to the folder (or to
the glob's fixed prefix); a row of a text, JSONL, CSV or Parquet file by its
0-based row number (line ``id + 1`` of a text file).

Any of these may be a store URI (``s3://bucket/photos/``, ``gs://.../captions.parquet``,
``hf://datasets/...``; :mod:`hub.dataset.store`): a folder or glob is listed once through
fsspec, a file is read with ranged requests, and an image is fetched as bytes in the worker
that decodes it. Image values that are URIs (an ``s3://`` or ``https://`` column) are fetched
the same way; relative paths in a file held in a store are taken from the file's prefix.

What a value means depends on the backbone's modality. For images a string is
a file path (relative paths are taken from the file's folder), ``bytes`` are an
encoded image, and a ``{"bytes", "path"}`` struct (the Hugging Face datasets
image column) is either. For text a value is the text. A row that cannot give
a value (bad JSON, a null, text that is not UTF-8) carries a :class:`Failure`
with the reason; the job records it and goes on.
"""

from __future__ import annotations

import csv
import glob as globlib
import hashlib
import io
import itertools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.dataset import store
from hub.deps import require
from hub.errors import InputError
from hub.inputs import IMAGE_SUFFIXES, image_files

__all__ = ["Failure", "Reader", "Record", "open_reader"]

_CHUNK = 1 << 24
_GLOB_MAGIC = set("*?[")
_IMAGE_COLUMNS = ("image", "img", "path", "file", "filename", "image_path")
_TEXT_COLUMNS = ("text", "sentence", "content", "body")


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
                return _fetch(value)
            if store.is_uri(self.path):
                return _fetch(store.join(store.parent(self.path), value))
            p = Path(value)
            return p if p.is_absolute() else Path(self.path).parent / p
        return Failure(f"expected an image path or image bytes, got {type(value).__name__}")

    def __repr__(self) -> str:
        col = f" column={self.column!r}" if self.column else ""
        return f"<{type(self).__name__} {self.path!r}{col} rows={len(self)}>"


class _PathList(Reader):
    """Image files listed once, sorted by id."""

    id_type = "string"

    def __init__(self, path: str, modality: str, root: Path, files: list[Path]) -> None:
        super().__init__(path, modality)
        if modality != "image":
            raise InputError(f"{path!r} lists image files, but the backbone is a {modality} "
                             "backbone. Pass a text, JSONL, CSV or Parquet file for text.")
        pairs = sorted((f.relative_to(root).as_posix(), f) for f in files)
        self.ids = [p[0] for p in pairs]
        self.files = [str(p[1]) for p in pairs]
        if not self.ids:
            raise InputError(f"{path!r} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        self.digest = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.files)

    def read(self, start: int, stop: int) -> list[Record]:
        return [Record(i, self.ids[i], _fetch(f) if store.is_uri(f) else Path(f))
                for i, f in ((i, self.files[i]) for i in range(start, min(stop, len(self))))]


class _StorePathList(_PathList):
    """Image objects under a store prefix, listed once; ids are keys relative to ``root``."""

    def __init__(self, path: str, modality: str, keys: list[str], root: str) -> None:
        protocol = path.partition("://")[0]
        files = [Path(k) for k in keys if Path(k).suffix.lower() in IMAGE_SUFFIXES
                 and not any(part.startswith(".") for part in Path(k).relative_to(root).parts)]
        super().__init__(path, modality, Path(root), files)
        self.files = [f"{protocol}://{f}" for f in self.files]


class FolderReader(_PathList):
    """Every image file under a folder, recursively; hidden files and folders are skipped."""

    kind = "folder"

    def __init__(self, path: str, modality: str) -> None:
        root = Path(path)
        super().__init__(str(root.resolve()), modality, root, image_files(root))


class StoreFolderReader(_StorePathList):
    """Every image object under a store prefix (``s3://bucket/photos/``), recursively."""

    kind = "folder"

    def __init__(self, uri: str, modality: str) -> None:
        fs, inner = store.filesystem(uri)
        root = inner.rstrip("/")
        keys = store.retried(uri, lambda: fs.find(root))
        super().__init__(uri.rstrip("/"), modality, [str(k) for k in keys], root)


class StoreGlobReader(_StorePathList):
    """The objects a glob over a store matches (``s3://bucket/photos/**/*.jpg``)."""

    kind = "glob"

    def __init__(self, pattern: str, modality: str) -> None:
        fs, inner = store.filesystem(pattern)
        fixed = list(itertools.takewhile(lambda s: not (_GLOB_MAGIC & set(s)), inner.split("/")))
        keys = [str(k) for k in store.retried(pattern, lambda: fs.glob(inner))]
        if not keys:
            raise InputError(f"The pattern {pattern!r} matches no objects.")
        super().__init__(pattern, modality, keys, "/".join(fixed))


class GlobReader(_PathList):
    """The files a glob pattern matches (``**`` recurses); ids are relative to its fixed prefix."""

    kind = "glob"

    def __init__(self, pattern: str, modality: str) -> None:
        fixed = list(itertools.takewhile(lambda s: not (_GLOB_MAGIC & set(s)), Path(pattern).parts))
        root = Path(*fixed) if fixed else Path(".")
        files = [Path(f) for f in globlib.glob(pattern, recursive=True) if os.path.isfile(f)]
        if not files:
            raise InputError(f"The pattern {pattern!r} matches no files.")
        super().__init__(pattern, modality, root, files)


class _Lines(Reader):
    """A file read line by line through an index of line offsets (built in one pass)."""

    def __init__(self, path: str, modality: str, column: str | None = None) -> None:
        super().__init__(_absolute(path), modality, column)
        import numpy as np

        starts, digest, pos, last = [np.zeros(1, dtype=np.int64)], hashlib.sha256(), 0, b"\n"
        with _chunks(self.path) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
                starts.append(nl.astype(np.int64) + pos + 1)
                pos += len(chunk)
                last = chunk[-1:]
        offsets = np.concatenate(starts)
        if last != b"\n":  # a last line without a newline
            offsets = np.append(offsets, pos + 1)
        self.offsets = offsets  # line i spans offsets[i] .. offsets[i + 1] - 1 (its newline)
        self.digest = digest.hexdigest()
        if len(self) == 0:
            raise InputError(f"{path!r} is empty.")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _lines(self, start: int, stop: int) -> list[bytes]:
        stop = min(stop, len(self))
        if start >= stop:
            return []
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        data = store.read_range(self.path, lo, hi)
        lines = []
        for i in range(start, stop):
            a, b = int(self.offsets[i]) - lo, int(self.offsets[i + 1]) - lo - 1
            line = data[a:b]
            if line.endswith(b"\r"):
                line = line[:-1]
            if i == 0 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            lines.append(line)
        return lines


class TextReader(_Lines):
    """One item per line: a text, or (for an image backbone) an image path."""

    kind = "text"

    def read(self, start: int, stop: int) -> list[Record]:
        return [Record(i, i, self._value(line.decode("utf-8", "surrogateescape") if
                                         self.modality == "image" else line))
                for i, line in enumerate(self._lines(start, stop), start)]


class JsonlReader(_Lines):
    """One JSON object per line; ``column`` names the field."""

    kind = "jsonl"

    def __init__(self, path: str, modality: str, column: str | None) -> None:
        super().__init__(path, modality, column)
        first = next((ln for ln in self._lines(0, min(len(self), 100)) if ln.strip()), b"{}")
        try:
            keys = list(json.loads(first))
        except (ValueError, TypeError):
            keys = []
        self.keys = keys
        self.column = _pick_column(path, column, keys, modality)

    def column_values(self, name: str) -> list[Any]:
        _pick_column(self.path, name, self.keys, self.modality)
        values: list[Any] = []
        for line in self._lines(0, len(self)):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            values.append(obj.get(name) if isinstance(obj, dict) else None)
        return values

    def read(self, start: int, stop: int) -> list[Record]:
        out = []
        for i, line in enumerate(self._lines(start, stop), start):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                out.append(Record(i, i, Failure(f"line {i + 1} is not valid JSON ({exc})")))
                continue
            if not isinstance(obj, dict) or self.column not in obj:
                out.append(Record(i, i, Failure(f"line {i + 1} has no field {self.column!r}")))
                continue
            out.append(Record(i, i, self._value(obj[self.column])))
        return out


class CsvReader(Reader):
    """A CSV (or ``.tsv``) file with a header row; the named column is read into memory."""

    kind = "csv"

    def __init__(self, path: str, modality: str, column: str | None) -> None:
        super().__init__(_absolute(path), modality, column)
        raw = store.read_bytes(self.path)
        self.digest = hashlib.sha256(raw).hexdigest()
        self.header, rows = _csv_rows(path, raw)
        self.column = _pick_column(path, column, self.header, modality)
        k = self.header.index(self.column)
        self.values: list[str | None] = [row[k] if k < len(row) else None for row in rows]
        if not self.values:
            raise InputError(f"{path!r} has a header but no rows.")

    def column_values(self, name: str) -> list[Any]:
        _pick_column(self.path, name, self.header, self.modality)
        k = self.header.index(name)
        rows = _csv_rows(self.path, store.read_bytes(self.path))[1]
        return [row[k] if k < len(row) else None for row in rows]

    def __len__(self) -> int:
        return len(self.values)

    def read(self, start: int, stop: int) -> list[Record]:
        return [Record(i, i, self._value(self.values[i])) for i in range(start, min(stop, len(self)))]


class ParquetReader(Reader):
    """A Parquet file; rows are read by row group, in the worker that needs them."""

    kind = "parquet"

    def __init__(self, path: str, modality: str, column: str | None) -> None:
        super().__init__(_absolute(path), modality, column)
        pf = _parquet_file(self.path)
        meta = pf.metadata
        self.column = _pick_column(path, column, pf.schema_arrow.names, modality)
        self.group_rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self.digest = f"size={store.size(self.path)} rows={meta.num_rows}"
        self._cache: tuple[int, list[Any]] | None = None
        if meta.num_rows == 0:
            raise InputError(f"{path!r} has no rows.")

    def column_values(self, name: str) -> list[Any]:
        pf = _parquet_file(self.path)
        _pick_column(self.path, name, pf.schema_arrow.names, self.modality)
        return list(pf.read(columns=[name]).column(0).to_pylist())

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}

    def __len__(self) -> int:
        return sum(self.group_rows)

    def _group(self, g: int) -> list[Any]:
        if self._cache is None or self._cache[0] != g:
            table = store.retried(self.path, lambda: _parquet_file(self.path).read_row_group(
                g, columns=[self.column]))
            self._cache = (g, table.column(0).to_pylist())
        return self._cache[1]

    def read(self, start: int, stop: int) -> list[Record]:
        out, first = [], 0
        stop = min(stop, len(self))
        for g, n in enumerate(self.group_rows):
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:
                values = self._group(g)
                out += [Record(i, i, self._value(values[i - first])) for i in range(lo, hi)]
            first += n
        return out


def _csv_rows(path: str, raw: bytes) -> tuple[list[str], Iterator[list[str]]]:
    """A CSV file's header and an iterator over its rows (tab-separated for ``.tsv``)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path!r} is not UTF-8 (at byte {exc.start}); re-save it as UTF-8.") \
            from exc
    reader = csv.reader(io.StringIO(text, newline=""),
                        delimiter="\t" if path.lower().endswith(".tsv") else ",")
    header = next(reader, None)
    if not header:
        raise InputError(f"{path!r} is empty; a CSV source needs a header row.")
    return header, reader


def _absolute(path: str) -> str:
    """A local path made absolute; a URI as given."""
    return path if store.is_uri(path) else str(Path(path).resolve())


def _chunks(path: str) -> Any:
    """A binary file to read in chunks: a local file, or a store object's bytes in memory."""
    if store.is_uri(path):
        return io.BytesIO(store.read_bytes(path))
    return open(path, "rb")


def _fetch(uri: str) -> bytes | Failure:
    """An image object's bytes (read in the worker that decodes it); a missing one is a bad item."""
    try:
        return store.read_bytes(uri)
    except (FileNotFoundError, IsADirectoryError) as exc:
        return Failure(f"no object {uri!r} ({type(exc).__name__})")
    except PermissionError as exc:
        return Failure(f"no permission to read {uri!r} ({exc})")


def _parquet_file(path: str) -> Any:
    pq = require("pyarrow.parquet", extra="dataset", purpose="Parquet sources and outputs")
    if store.is_uri(path):
        fs, inner = store.filesystem(path)
        try:
            return store.retried(path, lambda: pq.ParquetFile(fs.open(inner, "rb")))
        except FileNotFoundError as exc:
            raise InputError(f"{path!r} does not exist.") from exc
    try:
        return pq.ParquetFile(path)
    except OSError as exc:  # pyarrow.ArrowInvalid is an OSError/ValueError subclass
        raise InputError(f"{path!r} is not a readable Parquet file ({exc}).") from exc
    except ValueError as exc:
        raise InputError(f"{path!r} is not a readable Parquet file ({exc}).") from exc


def _pick_column(path: str, column: str | None, names: list[str], modality: str) -> str:
    if column is not None:
        if column not in names:
            raise InputError(f"{path!r} has no column {column!r}; its columns are "
                             f"{', '.join(map(str, names)) or '(none)'}.")
        return column
    guesses = _TEXT_COLUMNS if modality == "text" else _IMAGE_COLUMNS
    found = [c for c in guesses if c in names]
    if len(found) == 1 or (found and len(names) == 1):
        return found[0]
    if len(names) == 1:
        return names[0]
    raise InputError(f"Name the {modality} column of {path!r} with --column (column=...); its "
                     f"columns are {', '.join(map(str, names)) or '(none)'}.")


def open_reader(source: str | os.PathLike[str], modality: str, *, column: str | None = None) -> Reader:
    """Open a folder, glob, text, JSONL, CSV or Parquet file, or WebDataset tar shards (a
    ``.tar`` file, a brace pattern ``{00000..00099}.tar`` or a glob of them;
    :mod:`hub.dataset.tars`), local or by URI, as a :class:`Reader` of its rows.

    :param modality: the backbone's modality (``"image"`` or ``"text"``).
    :param column: the field holding the item, for JSONL, CSV and Parquet (guessed when the
        file has an obvious one: ``text``, ``image``, ``path``...).
    :raises InputError: when the source is missing, empty, or the column does not exist.
    """
    text = os.fspath(source)
    from hub.dataset.tars import WebDatasetReader, is_webdataset

    if is_webdataset(text):
        return WebDatasetReader(text, modality, column)
    if store.is_uri(text):
        return _open_uri(text, modality, column)
    p = Path(text)
    if p.is_dir():
        reader: Reader = FolderReader(text, modality)
    elif p.is_file():
        file_reader = _file_reader(text, modality, column)
        if file_reader is not None:
            return file_reader
        reader = TextReader(text, modality)
    elif _GLOB_MAGIC & set(text):
        reader = GlobReader(text, modality)
    else:
        raise InputError(f"The source {text!r} does not exist. Pass a folder, a glob, a text file, "
                         "or a JSONL, CSV or Parquet file.")
    return _no_column(reader, column)


def _file_reader(path: str, modality: str, column: str | None) -> Reader | None:
    """The reader of a JSONL, CSV or Parquet file by its suffix; ``None`` for a text file."""
    suffix = Path(path.partition("://")[2] or path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return JsonlReader(path, modality, column)
    if suffix in (".csv", ".tsv"):
        return CsvReader(path, modality, column)
    if suffix in (".parquet", ".pq"):
        return ParquetReader(path, modality, column)
    return None


def _no_column(reader: Reader, column: str | None) -> Reader:
    if column is not None:
        raise InputError(f"column={column!r} applies to JSONL, CSV and Parquet sources, not to a "
                         f"{reader.kind}.")
    return reader


def _open_uri(uri: str, modality: str, column: str | None) -> Reader:
    """A source in a store: a prefix (folder), a glob, or one object."""
    fs, inner = store.filesystem(uri)
    if _GLOB_MAGIC & set(inner):
        return _no_column(StoreGlobReader(uri, modality), column)
    if store.retried(uri, lambda: fs.isdir(inner)):
        return _no_column(StoreFolderReader(uri, modality), column)
    if not store.retried(uri, lambda: fs.isfile(inner)):
        raise InputError(f"The source {uri!r} does not exist in the store (no object, no prefix). "
                         "Check the bucket and key, and the credentials and endpoint "
                         "(AWS_ENDPOINT_URL, ...).")
    file_reader = _file_reader(uri, modality, column)
    if file_reader is not None:
        return file_reader
    return _no_column(TextReader(uri, modality), column)
