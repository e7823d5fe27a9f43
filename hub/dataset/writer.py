"""The output folder of a dataset job: Parquet shards, ``_manifest.json``, ``_errors.jsonl``.

Layout::

    OUT/
      part-00000.parquet    rows 0 .. S-1 of the source (S = shard size), minus bad items
      part-00001.parquet    rows S .. 2S-1
      ...
      _manifest.json        the job, the backbone, its weights' sha256, preprocessing, hub
                            version, the precision and float32 islands the network ran with
                            (``embedding.precision``, ``embedding.islands``), row counts, and
                            per shard: row range, rows, sha256
      _errors.jsonl         one {"id", "index", "reason", "shard"} per bad item

Each shard holds the columns ``id`` (string path or int64 row number),
``embedding`` (fixed-size list of float32) and one ``stage_<name>`` column per
requested stage (image maps flattened, shape in the manifest; text hidden
states as a list of L x D floats), sorted by source row. Its Parquet footer
records the job's key, its row range and its bad items.

A shard is committed once every row of its range is accounted for (a row or an
error), in one step (:mod:`hub.dataset.output`: a local folder writes a temporary
name and renames it; an object store creates the object in one conditional PUT),
so a shard in the output is always complete. ``OUT`` may be a store URI
(``s3://bucket/feats/``); one job writes it at a time (a lock file, or
:mod:`hub.dataset.lease` in a store). A rerun checks each shard's footer against the job and only
computes the missing shards: no row is ever written twice. The manifest and
the errors file are summaries, rewritten from the shards on each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.dataset.items import ItemError
from hub.dataset.job import FeatureBatch, Job
from hub.dataset.output import open_output
from hub.dataset.store import is_uri
from hub.deps import require
from hub.errors import InputError

__all__ = ["DatasetResult", "ShardWriter", "shard_ranges"]

FORMAT = "backbone-hub/dataset@1"
MANIFEST = "_manifest.json"
ERRORS = "_errors.jsonl"
_META_KEY = b"hub.shard"


def shard_ranges(rows: int, shard_size: int) -> list[tuple[int, int]]:
    """The row range of every shard."""
    return [(a, min(a + shard_size, rows)) for a in range(0, rows, shard_size)]


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass
class DatasetResult:
    """What :func:`hub.extract_dataset` did.

    :param out: the output folder (a ``Path``), or its store URI (a ``str``).
    :param rows: rows with features in the whole output.
    :param errors: bad items in the whole output.
    :param shards: shards in the output.
    :param skipped: shards already complete before this run (resumed).
    :param manifest: the final ``_manifest.json``.
    """

    out: Path | str
    rows: int
    errors: int
    shards: int
    skipped: int
    manifest: dict[str, Any]

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))


@dataclass
class _Buffer:
    start: int
    stop: int
    rows: dict[int, tuple[Any, Any, dict[str, Any]]] = field(default_factory=dict)
    errors: dict[int, ItemError] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return len(self.rows) + len(self.errors) == self.stop - self.start


def _pa() -> Any:
    require("pyarrow.parquet", extra="dataset", purpose="writing dataset features")
    return require("pyarrow", extra="dataset")


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


class ShardWriter:
    """Writes one job's shards into ``out``, resuming what an earlier run finished.

    Use it as a context manager: :meth:`open` takes a lock on the folder, or a lease on a store
    prefix (one job writes it at a time), leaving the ``with`` block releases it.

    :param rows: rows in the source.
    :param engine: recorded in the manifest (``"local"`` or ``"ray"``).
    :param precision: what the network computes in (``Backbone.precision``), recorded in the
        manifest's ``embedding.precision``; default: the job's ``dtype``.
    :param islands: the float32 islands the network ran with (``"early"``, ``"depthwise"``;
        :mod:`hub.islands`), recorded in ``embedding.islands``; ``None``: none.
    """

    def __init__(self, out: str | os.PathLike[str], job: Job, rows: int, *, engine: str,
                 embedding_dim: int | None = None, precision: str | None = None,
                 islands: str | None = None) -> None:
        self.output = open_output(out)
        self.out: Path | str = os.fspath(out) if is_uri(out) else Path(out)
        self.precision = precision or job.dtype
        self.islands = islands
        self.job = job
        self.rows = rows
        self.engine = engine
        self.ranges = shard_ranges(rows, job.shard_size)
        self.done: dict[int, dict[str, Any]] = {}   # shard -> manifest entry
        self.errors: dict[int, list[dict[str, Any]]] = {}
        self.stage_info: dict[str, Any] = {}
        self.embedding_dim = embedding_dim
        self.skipped = 0
        self._buffers: dict[int, _Buffer] = {}
        self._opened = False
        self._created = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Release the folder's lock (or the store's lease), whether the job finished or not."""
        if self._opened:
            self._opened = False
            self.output.release(failing=exc_type is not None)

    # ---- opening and resuming ------------------------------------------------------------------
    def open(self) -> list[tuple[int, int, int]]:
        """Check the folder, take stock of complete shards; returns the pending (shard, start, stop)."""
        _pa()
        names = set(self.output.prepare())
        self._opened = True
        old = self._read_manifest() if MANIFEST in names else None
        entries = {e["file"]: e for e in (old or {}).get("shards", [])}
        for k, (start, stop) in enumerate(self.ranges):
            if shard_name(k) in names:
                self._adopt(k, start, stop, shard_name(k), entries.get(shard_name(k)))
        extra = sorted(n for n in names if n.startswith("part-") and n.endswith(".parquet")
                       and n not in {shard_name(k) for k in range(len(self.ranges))})
        if extra:
            raise InputError(f"{self.out} holds shards this job does not have ({', '.join(extra[:3])}"
                             "); it is the output of another job. Use another output folder.")
        self.skipped = len(self.done)
        if old:
            self.stage_info = old.get("stages") or {}
            self.embedding_dim = old.get("embedding", {}).get("dim") or self.embedding_dim
            self._created = old.get("created", self._created)
        self._write_errors()
        self._write_manifest()
        return [(k, a, b) for k, (a, b) in enumerate(self.ranges) if k not in self.done]

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.output.path(MANIFEST)
        try:
            data: dict[str, Any] = json.loads(self.output.read_text(MANIFEST))
        except ValueError as exc:
            raise InputError(f"{path} is not valid JSON ({exc}); delete the output folder to "
                             "start again.") from exc
        if data.get("job_key") != self.job.key:
            old = data.get("job", {})
            new = self.job.fingerprint()
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise InputError(f"{self.out} holds the output of a different job (differs in: "
                             f"{', '.join(diff) or 'format'}). Use another output folder, or delete "
                             "this one to start again.")
        return data

    def _adopt(self, k: int, start: int, stop: int, name: str, entry: dict[str, Any] | None) -> None:
        path = self.output.path(name)
        try:
            pf = self.output.parquet_file(name)
            meta = json.loads((pf.schema_arrow.metadata or {})[_META_KEY])
            rows = pf.metadata.num_rows
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path} is not a shard this job wrote ({exc}); delete it and run "
                             "again to recompute it.") from exc
        if meta.get("job") != self.job.key or (meta.get("start"), meta.get("stop")) != (start, stop):
            raise InputError(f"{path} belongs to another job or row range; use another output "
                             "folder, or delete this one to start again.")
        errors = meta.get("errors", [])
        if rows + len(errors) != stop - start:
            raise InputError(f"{path} accounts for {rows + len(errors)} of its {stop - start} rows; "
                             "delete it and run again to recompute it.")
        size = self.output.size(name)
        sha = entry["sha256"] if entry and entry.get("bytes") == size else \
            hashlib.sha256(self.output.read_bytes(name)).hexdigest()
        self.done[k] = {"file": name, "start": start, "stop": stop, "rows": rows,
                        "errors": len(errors), "bytes": size, "sha256": sha}
        self.errors[k] = errors

    # ---- adding rows ---------------------------------------------------------------------------
    def add(self, batch: FeatureBatch) -> None:
        """Take a batch (in any order, from any shard); write every shard it completes."""
        if self.embedding_dim is None and len(batch):
            self.embedding_dim = int(batch.embedding.shape[1])
        touched = set()
        for j, (i, rid) in enumerate(zip(batch.indices, batch.ids, strict=True)):
            buf = self._buffer(i)
            if buf is not None:
                buf.rows[i] = (rid, batch.embedding[j], {n: v[j] for n, v in batch.stages.items()})
                touched.add(i // self.job.shard_size)
        for e in batch.errors:
            buf = self._buffer(e.index)
            if buf is not None:
                buf.errors[e.index] = e
                touched.add(e.index // self.job.shard_size)
        for k in sorted(touched):
            buf = self._buffers[k]
            # a shard of bad items only waits until a good row has shown the stage shapes
            if buf.done and (buf.rows or not self.job.stages or self.stage_info):
                self._commit(k, self._buffers.pop(k))

    def flush(self) -> None:
        """Write the complete shards still held back (all bad items, stage shapes unknown)."""
        for k in sorted(k for k, b in self._buffers.items() if b.done):
            self._commit(k, self._buffers.pop(k))

    def _buffer(self, index: int) -> _Buffer | None:
        k = index // self.job.shard_size
        if k in self.done or not 0 <= k < len(self.ranges):
            return None  # a retried batch of a shard already written: never write a row twice
        if k not in self._buffers:
            self._buffers[k] = _Buffer(*self.ranges[k])
        return self._buffers[k]

    def record_failure(self, error: ItemError) -> None:
        """Log a bad item that stops the job (``strict``) before its shard is complete."""
        line = json.dumps({**error.to_json(), "shard": None}) + "\n"
        if not self.output.append_text(ERRORS, line):
            self._write_errors(extra=line)
        self._write_manifest()

    # ---- writing -------------------------------------------------------------------------------
    def _table(self, buf: _Buffer, meta: dict[str, Any]) -> Any:
        import numpy as np

        pa = _pa()
        order = sorted(buf.rows)
        ids = [buf.rows[i][0] for i in order]
        dim = self.embedding_dim or 0
        emb = np.asarray([buf.rows[i][1] for i in order], dtype=np.float32).reshape(len(order), dim)
        id_type = pa.string() if self.job.source.get("id_type") == "string" else pa.int64()
        cols = {"id": pa.array(ids, type=id_type),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)}
        for name in self._stage_names(buf):
            values = [buf.rows[i][2][name] for i in order]
            info = self.stage_info.get(name) or (_stage_info(values[0]) if values else None)
            if info is None:
                continue
            self.stage_info[name] = info
            if info["shape"][0] is None:  # text: (L_i, D) per row
                cols[f"stage_{name}"] = pa.array([np.asarray(v, np.float32).reshape(-1) for v in values],
                                                 type=pa.list_(pa.float32()))
            else:
                width = int(np.prod(info["shape"]))
                flat = np.asarray(values, dtype=np.float32).reshape(-1)
                cols[f"stage_{name}"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), width)
        table = pa.table(cols)
        return table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})

    def _stage_names(self, buf: _Buffer) -> list[str]:
        first = next(iter(buf.rows.values()), None)
        names = list(first[2]) if first else []
        return names + [n for n in self.stage_info if n not in names]

    def _commit(self, k: int, buf: _Buffer) -> None:
        errors = [e.to_json() for _, e in sorted(buf.errors.items())]
        meta = {"job": self.job.key, "index": k, "start": buf.start, "stop": buf.stop,
                "errors": errors}
        table = self._table(buf, meta)
        name = shard_name(k)
        size, sha = self.output.write_shard(name, table)
        self.done[k] = {"file": name, "start": buf.start, "stop": buf.stop,
                        "rows": len(buf.rows), "errors": len(errors), "bytes": size, "sha256": sha}
        self.errors[k] = errors
        if errors:
            text = "".join(json.dumps({**e, "shard": name}) + "\n" for e in errors)
            if not self.output.append_text(ERRORS, text):
                self._write_errors()
        self._write_manifest()

    def _write_errors(self, extra: str = "") -> None:
        lines = [json.dumps({**e, "shard": shard_name(k)})
                 for k in sorted(self.errors) for e in self.errors[k]]
        self.output.write_text(ERRORS, "".join(line + "\n" for line in lines) + extra)

    def manifest(self) -> dict[str, Any]:
        """The manifest as it stands."""
        from hub.api import version

        shards = [self.done[k] for k in sorted(self.done)]
        return {
            "format": FORMAT,
            "hub_version": version(),
            "job_key": self.job.key,
            "job": self.job.fingerprint(),
            "backbone": self.job.backbone,
            "preprocessing": self.job.preprocessing,
            "embedding": {"dim": self.embedding_dim, "dtype": "float32", "precision": self.precision,
                          "islands": self.islands, "pool": self.job.pool,
                          "normalize": self.job.normalize},
            "stages": self.stage_info,
            "source": self.job.source,
            "columns": ["id", "embedding", *[f"stage_{n}" for n in self.stage_info]],
            "engine": self.engine,
            "shard_size": self.job.shard_size,
            "shards_total": len(self.ranges),
            "rows": sum(s["rows"] for s in shards),
            "errors": sum(s["errors"] for s in shards),
            "complete": len(self.done) == len(self.ranges),
            "created": self._created,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "shards": shards,
        }

    def _write_manifest(self) -> None:
        self.output.write_text(MANIFEST, _json(self.manifest()))

    def close(self) -> DatasetResult:
        """Write held-back shards, then the errors file in row order and the final manifest."""
        self.flush()
        self._write_errors()
        manifest = self.manifest()
        self.output.write_text(MANIFEST, _json(manifest))
        return DatasetResult(out=self.out, rows=manifest["rows"], errors=manifest["errors"],
                             shards=len(self.done), skipped=self.skipped, manifest=manifest)


def _stage_info(value: Any) -> dict[str, Any]:
    import numpy as np

    shape = list(np.shape(value))
    if len(shape) == 2:  # text hidden states (L, D): variable length
        return {"shape": [None, shape[1]], "layout": "NLC", "column_type": "list<float32>"}
    return {"shape": shape, "layout": "NCHW" if len(shape) == 3 else "flat",
            "column_type": f"fixed_size_list<float32>[{int(np.prod(shape))}]"}
