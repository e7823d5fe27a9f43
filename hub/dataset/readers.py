"""Readers of a dataset's source: a folder, a glob, a text file, JSONL, CSV or Parquet.

:func:`open_reader` picks the reader of a source; the readers live by job in
:mod:`hub.dataset.path_readers` (image files listed once: a folder, a glob),
:mod:`hub.dataset.file_readers` (one text, JSONL, CSV or Parquet file) and
:mod:`hub.dataset.tars` (WebDataset shards); their base, :class:`Reader`, and its
:class:`Record` and :class:`Failure` are in :mod:`hub.dataset.rows` (re-exported here).

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

import os
from pathlib import Path

from hub.dataset import store
from hub.dataset.file_readers import CsvReader, JsonlReader, ParquetReader, TextReader
from hub.dataset.path_readers import FolderReader, GlobReader, StoreFolderReader, StoreGlobReader
from hub.dataset.rows import GLOB_MAGIC, Failure, Reader, Record
from hub.errors import InputError

__all__ = ["Failure", "Reader", "Record", "open_reader"]


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
    elif GLOB_MAGIC & set(text):
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
    if GLOB_MAGIC & set(inner):
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
