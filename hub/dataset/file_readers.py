"""Readers of one file, local or in a store: a text file (a row per line), JSONL, CSV/TSV
and Parquet (a row per record; the item in one column). Ids are 0-based row numbers. A text
or JSONL file keeps an array of line offsets, a Parquet file only its row-group sizes (each
worker opens the file itself).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.dataset import store
from hub.dataset.rows import Failure, Reader, Record
from hub.deps import require
from hub.errors import InputError

__all__ = ["CsvReader", "JsonlReader", "ParquetReader", "TextReader"]

_CHUNK = 1 << 24
_IMAGE_COLUMNS = ("image", "img", "path", "file", "filename", "image_path")
_TEXT_COLUMNS = ("text", "sentence", "content", "body")


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


