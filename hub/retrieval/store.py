"""The stored embeddings of a dataset output, memory-mapped for search.

A dataset output (:mod:`hub.dataset.writer`) keeps its embeddings in zstd-compressed Parquet
shards: compact, but every read decompresses them (2 GB for a million 512-d rows). The first
search copies the ``id`` and ``embedding`` columns once into one uncompressed Arrow IPC file
beside the shards, and every search after that maps it into memory::

    OUT/
      part-00000.parquet ...   the shards (untouched)
      _manifest.json           the job and its shards (untouched)
      _search.arrow            id, embedding (fixed_size_list<float32>[D]), norm (float32): one
                               record batch per shard, in the manifest's shard order; its schema
                               metadata ``hub.search`` records the job key, D, and for each shard
                               its name, size, mtime and sha256 when the copy was made

Why this form: an Arrow IPC file holds string ids beside the vectors without pickle, in one file,
so one rename keeps them consistent; each record batch's embedding is a contiguous float32
buffer that numpy views without a copy (``pyarrow.memory_map``), so opening costs no memory and
the page cache serves repeated searches; any Arrow tool reads it. The name starts with ``_``,
which pyarrow, DuckDB and ``hub extract`` skip when they read the folder's shards.

The copy is written to a unique ``._search.arrow.*.tmp.arrow`` (:mod:`hub.atomic`) and
renamed into place (readers never see half a file; two searches building it at once each
rename a complete copy). It is rebuilt when the shards the manifest lists differ from the ones
recorded (a resumed job added shards, a shard was recomputed or rewritten: name, size, mtime or
sha256). When the copy cannot be written
(a read-only folder, a full disk), the embeddings are read from the shards into memory for this
search, with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.atomic import write_atomic
from hub.deps import require
from hub.errors import SearchIndexError

__all__ = ["CACHE_FILE", "Store", "open_store"]

CACHE_FILE = "_search.arrow"
_FORMAT = "backbone-hub/search-cache@1"
_META_KEY = b"hub.search"


@dataclass
class Store:
    """A dataset output's embeddings, ready to score.

    :param path: the output folder.
    :param manifest: its ``_manifest.json``.
    :param dim: the embedding width D.
    :param ids: every row's ``id`` (a pyarrow ChunkedArray: strings or int64), in row order.
    :param chunks: (n_i, D) float32 arrays, views of the memory-mapped file (or in memory when
        the folder is read-only), one per shard.
    :param norms: each row's L2 norm, chunked like ``chunks``.
    :param cache: ``"built"`` (this call wrote ``_search.arrow``), ``"reused"`` (it mapped an
        up-to-date one) or ``"memory"`` (read from the shards: the folder is read-only).
    """

    path: Path
    manifest: dict[str, Any]
    dim: int
    ids: Any
    chunks: list[Any] = field(default_factory=list)
    norms: list[Any] = field(default_factory=list)
    cache: str = "reused"

    @property
    def rows(self) -> int:
        return int(sum(len(c) for c in self.chunks))


def _pyarrow() -> Any:
    for module in ("pyarrow.ipc", "pyarrow.parquet"):
        require(module, extra="dataset", purpose="searching dataset features")
    return require("pyarrow", extra="dataset")


def read_manifest(path: Path) -> dict[str, Any]:
    """The ``_manifest.json`` of a dataset output folder.

    :raises SearchIndexError: the folder is missing, is a file, or is not a dataset output.
    """
    from hub.dataset.writer import FORMAT, MANIFEST

    make = "Make one with `hub extract NAME SOURCE --out DIR` (or hub.extract_dataset)."
    if not path.exists():
        raise SearchIndexError(f"{str(path)!r} does not exist. Pass the folder that `hub extract "
                               f"... --out DIR` wrote.")
    if not path.is_dir():
        raise SearchIndexError(f"{str(path)!r} is a file, not a dataset output folder. Pass the "
                               f"folder that `hub extract ... --out DIR` wrote. {make}")
    file = path / MANIFEST
    if not file.is_file():
        raise SearchIndexError(f"{str(path)!r} is not a dataset output (no {MANIFEST}). {make}")
    try:
        data = json.loads(file.read_text())
    except (ValueError, OSError) as exc:
        raise SearchIndexError(f"{file} cannot be read ({exc}). Run the same `hub extract` again "
                               "to rewrite it.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise SearchIndexError(f"{file} is not a backbone-hub dataset manifest (format {found!r}, "
                               f"expected {FORMAT!r}). {make}")
    return data


def _dim(manifest: dict[str, Any], path: Path) -> int:
    dim = (manifest.get("embedding") or {}).get("dim")
    if not isinstance(dim, int) or dim < 1:
        raise SearchIndexError(f"{path} records no embedding width ({dim!r}) in its manifest: it "
                               "holds no rows yet. Run `hub extract` into it first.")
    return dim


def _fingerprint(path: Path, manifest: dict[str, Any], dim: int) -> dict[str, Any]:
    """What the cache must match: the job, D, and each listed shard's name, size, mtime, sha256."""
    shards = []
    for entry in manifest.get("shards", []):
        file = path / entry["file"]
        try:
            st = file.stat()
        except FileNotFoundError as exc:
            raise SearchIndexError(f"{file} is listed in {path / '_manifest.json'} but missing. Run "
                                   "the same `hub extract` again to recompute it.") from exc
        shards.append([entry["file"], st.st_size, st.st_mtime_ns, entry.get("sha256")])
    return {"format": _FORMAT, "job_key": manifest.get("job_key"), "dim": dim, "shards": shards}


def _read_cache(file: Path, want: dict[str, Any]) -> Any:
    """The memory-mapped table of an up-to-date cache file, else None."""
    pa = _pyarrow()
    if not file.is_file():
        return None
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(file), "r"))
        meta = json.loads((reader.schema.metadata or {}).get(_META_KEY, b"null"))
    except (OSError, ValueError, pa.ArrowInvalid):
        return None  # unreadable or foreign: rebuilt below, replacing it
    if meta != want:
        return None
    return reader.read_all()


def _shard_batches(path: Path, manifest: dict[str, Any], dim: int, schema: Any) -> Any:
    """Each listed shard's (id, embedding, norm) as one record batch of ``schema``."""
    import numpy as np

    pa = _pyarrow()
    for entry in manifest.get("shards", []):
        file = path / entry["file"]
        try:
            table = pa.parquet.read_table(file, columns=["id", "embedding"])
        except (OSError, pa.ArrowInvalid, KeyError) as exc:
            raise SearchIndexError(f"{file} cannot be read as a shard ({exc}). Delete it and run "
                                   "the same `hub extract` again to recompute it.") from exc
        emb_type = table.schema.field("embedding").type
        width = getattr(emb_type, "list_size", None)
        if width != dim:
            raise SearchIndexError(f"{file} stores {width}-d embeddings but the manifest says "
                                   f"{dim}-d: the folder mixes outputs. Run `hub extract` into a "
                                   "new folder.")
        table = table.combine_chunks()
        emb = table.column("embedding").chunk(0) if table.num_rows else None
        vectors = (emb.flatten().to_numpy().reshape(-1, dim) if emb is not None
                   else np.zeros((0, dim), np.float32))
        norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
        ids = table.column("id")
        yield pa.RecordBatch.from_arrays(
            [ids.chunk(0) if ids.num_chunks else pa.array([], type=ids.type),
             pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim), pa.array(norms)],
            schema=schema)


def _schema(path: Path, manifest: dict[str, Any], dim: int, want: dict[str, Any]) -> Any:
    pa = _pyarrow()
    id_type = pa.string() if (manifest.get("source") or {}).get("id_type") == "string" else pa.int64()
    return pa.schema([("id", id_type), ("embedding", pa.list_(pa.float32(), dim)),
                      ("norm", pa.float32())], metadata={_META_KEY: json.dumps(want).encode()})


def _build_cache(path: Path, manifest: dict[str, Any], dim: int, want: dict[str, Any]) -> Any:
    """Write the cache file (temporary name, then one rename); returns its mapped table, or the
    batches in memory (with a warning) when the folder cannot be written."""
    pa = _pyarrow()
    schema = _schema(path, manifest, dim, want)
    file = path / CACHE_FILE

    def copy(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in _shard_batches(path, manifest, dim, schema):
                writer.write_batch(batch)

    try:
        write_atomic(file, copy, make_parent=False)
    except OSError as exc:  # read-only folder, disk full, the folder changed meanwhile
        warnings.warn(f"Cannot write {file} ({exc}); reading the embeddings from the shards into "
                      "memory for this search. Make the folder writable (and free D x 4 bytes a "
                      "row) to cache them, memory-mapped and built once.", UserWarning, stacklevel=4)
        return pa.Table.from_batches(list(_shard_batches(path, manifest, dim, schema)),
                                     schema=schema), False
    return pa.ipc.open_file(pa.memory_map(str(file), "r")).read_all(), True


def open_store(index_dir: str | os.PathLike[str]) -> Store:
    """Open a dataset output for search: its manifest, and its embeddings memory-mapped from
    ``_search.arrow`` (built now when missing or out of date; see the module docstring).

    :raises SearchIndexError: not a dataset output, no rows, or shards that do not fit the manifest.
    """
    from hub.dataset.store import is_uri

    if is_uri(index_dir):
        from hub.retrieval.remote import local_copy

        path = local_copy(os.fspath(index_dir))
    else:
        path = Path(index_dir)
    manifest = read_manifest(path)
    if not manifest.get("shards") or not manifest.get("rows"):
        errors = manifest.get("errors") or 0
        why = (f"all {errors} items were bad (see {path / '_errors.jsonl'})" if errors
               else "no shard has been written yet")
        raise SearchIndexError(f"{path} holds no rows to search: {why}. Run `hub extract` into it "
                               "with a source that has usable items.")
    dim = _dim(manifest, path)
    want = _fingerprint(path, manifest, dim)
    table = _read_cache(path / CACHE_FILE, want)
    cache = "reused"
    if table is None:
        table, written = _build_cache(path, manifest, dim, want)
        cache = "built" if written else "memory"
    chunks, norms = [], []
    for emb, norm in zip(table.column("embedding").chunks, table.column("norm").chunks, strict=True):
        chunks.append(emb.flatten().to_numpy(zero_copy_only=True).reshape(-1, dim))
        norms.append(norm.to_numpy(zero_copy_only=True))
    store = Store(path=path, manifest=manifest, dim=dim, ids=table.column("id"), chunks=chunks,
                  norms=norms, cache=cache)
    if store.rows == 0:
        raise SearchIndexError(f"{path} holds no rows to search. Run `hub extract` into it with a "
                               "source that has usable items.")
    return store
