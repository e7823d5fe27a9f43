"""WebDataset sources: tar shards of samples (``shards/{00000..00099}.tar``), local or in a store.

The WebDataset convention (img2dataset, clip-retrieval, LAION): a sample is the run of
consecutive tar members sharing a *key* (the member name up to the first ``.`` of its base
name); each member's extension names a field: ``000123.jpg``, ``000123.txt`` (a caption),
``000123.json`` (metadata), ``000123.cls`` (a class number)...

:class:`WebDatasetReader` is an ordinary :class:`~hub.dataset.readers.Reader`: row ``i`` is the
``i``-th sample across the shards in pattern order, its id the sample key (``__key__``). When it
opens, the shards are indexed once (each member's name, offset and size, read from the tar
headers; in a store through fsspec with 1 MiB read-ahead blocks, one pass). A worker then reads a
row range with one ranged request per shard it touches (the samples of a range are contiguous in
their tar) and takes the members apart in memory: no tar is ever downloaded whole to a disk.

The value a row gives is its image member (the first of ``jpg jpeg png webp bmp tif tiff ppm
pgm gif``, or ``column=`` an extension) for an image backbone, its ``txt`` member (or
``column=``) for a text one. Other fields are columns for :meth:`column_values` (``hub probe``'s
labels): an extension (``txt`` -> str, ``json`` -> the parsed object, ``cls`` -> int), or a
key of the ``json`` member (``column_values("label")``).

We read tars with the standard library's :mod:`tarfile` over fsspec rather than the
``webdataset`` package: that package streams samples in order (an ``IterableDataset``), while
resumable shards need random access to row ranges (:mod:`hub.dataset.writer`); the format
itself is only tar.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from hub.dataset import store
from hub.dataset.readers import Failure, Reader, Record
from hub.errors import InputError

__all__ = ["WebDatasetReader", "expand_braces", "is_webdataset"]

_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm", "pgm", "gif")
_BRACE = re.compile(r"\{([^{}]*)\}")
_BLOCK = 1 << 20


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a,b}`` lists and ``{000..099}`` ranges (zero padding kept), left to right.

    :raises InputError: a range whose ends are not numbers, or that runs backwards.
    """
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    if ".." in body:
        lo, _, hi = body.partition("..")
        if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
            raise InputError(f"{pattern!r}: the range {{{body}}} must be two ascending whole "
                             "numbers, like {00000..00099}.")
        width = len(lo) if lo.startswith("0") else 0
        choices = [str(n).zfill(width) for n in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    head, tail = pattern[:m.start()], pattern[m.end():]
    return [x for c in choices for x in expand_braces(head + c + tail)]


def is_webdataset(source: str) -> bool:
    """A tar file, a brace pattern or a glob of ``.tar`` files."""
    return source.rstrip("/").lower().endswith(".tar")


@dataclass(frozen=True)
class _Member:
    ext: str
    offset: int
    size: int


@dataclass(frozen=True)
class _Sample:
    shard: int
    key: str
    members: tuple[_Member, ...]

    @property
    def start(self) -> int:
        return min(m.offset for m in self.members)

    @property
    def stop(self) -> int:
        return max(m.offset + m.size for m in self.members)

    def field(self, ext: str) -> _Member | None:
        return next((m for m in self.members if m.ext == ext), None)


def _shards(pattern: str) -> list[str]:
    """The tar files a pattern names: braces expanded, then any glob matched."""
    names: list[str] = []
    for name in expand_braces(pattern):
        if set("*?[") & set(name):
            if store.is_uri(name):
                fs, inner = store.filesystem(name)
                protocol = name.partition("://")[0]
                found = store.retried(name, functools.partial(fs.glob, inner))
                names += sorted(f"{protocol}://{p}" for p in found)
            else:
                import glob

                names += sorted(glob.glob(name))
        else:
            names.append(name)
    if not names:
        raise InputError(f"The pattern {pattern!r} matches no tar files.")
    return names


def _index(path: str) -> list[tuple[str, _Member]]:
    """(key, member) of every file in one tar, in tar order."""
    def scan() -> list[tuple[str, _Member]]:
        if store.is_uri(path):
            fs, inner = store.filesystem(path)
            fh: Any = fs.open(inner, "rb", block_size=_BLOCK, cache_type="readahead")
        else:
            fh = open(path, "rb")  # noqa: SIM115 -- closed below
        out = []
        try:
            with tarfile.open(fileobj=fh, mode="r:") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    p = PurePosixPath(info.name)
                    key, _, ext = p.name.partition(".")
                    if not key or not ext:
                        continue
                    out.append((str(p.parent / key) if str(p.parent) != "." else key,
                                _Member(ext.lower(), info.offset_data, info.size)))
        finally:
            fh.close()
        return out

    try:
        return store.retried(path, scan)
    except FileNotFoundError as exc:
        raise InputError(f"The tar shard {path!r} does not exist.") from exc
    except tarfile.TarError as exc:
        raise InputError(f"{path!r} is not a readable tar file ({exc}).") from exc


class WebDatasetReader(Reader):
    """Samples of WebDataset tar shards (see the module docstring)."""

    kind = "webdataset"
    id_type = "string"

    def __init__(self, pattern: str, modality: str, column: str | None = None) -> None:
        super().__init__(pattern, modality, column)
        self.shards = _shards(pattern)
        samples: list[_Sample] = []
        digest = hashlib.sha256()
        for s, path in enumerate(self.shards):
            for key, group in itertools.groupby(_index(path), key=lambda km: km[0]):
                samples.append(_Sample(s, key, tuple(m for _, m in group)))
            digest.update(f"{PurePosixPath(path).name}:{len(samples)}\n".encode())
        if not samples:
            raise InputError(f"{pattern!r} holds no samples (files named KEY.EXT).")
        self.samples = samples
        digest.update("\n".join(x.key for x in samples).encode())
        self.digest = digest.hexdigest()
        fields = sorted({m.ext for x in samples for m in x.members})
        if column is not None and column not in fields:
            raise InputError(f"{pattern!r} has no field {column!r}; its samples have "
                             f"{', '.join(fields)}.")
        self.fields = fields

    def __len__(self) -> int:
        return len(self.samples)

    def _field(self, sample: _Sample) -> _Member | Failure:
        if self.column is not None:
            exts: tuple[str, ...] = (self.column,)
        else:
            exts = _IMAGE_EXTS if self.modality == "image" else ("txt", "text")
        for ext in exts:
            member = sample.field(ext)
            if member is not None:
                return member
        return Failure(f"sample {sample.key!r} has no {' / '.join(exts[:4])} field")

    def _blobs(self, start: int, stop: int) -> dict[int, tuple[int, bytes]]:
        """The bytes spanning rows ``start..stop-1``, one ranged read per shard: shard ->
        (offset of the first byte, bytes)."""
        blobs: dict[int, tuple[int, bytes]] = {}
        for s, group in itertools.groupby(self.samples[start:stop], key=lambda x: x.shard):
            items = list(group)
            lo, hi = min(x.start for x in items), max(x.stop for x in items)
            blobs[s] = (lo, store.read_range(self.shards[s], lo, hi))
        return blobs

    def read(self, start: int, stop: int) -> list[Record]:
        stop = min(stop, len(self))
        blobs = self._blobs(start, stop)
        out = []
        for i in range(start, stop):
            sample = self.samples[i]
            member = self._field(sample)
            if isinstance(member, Failure):
                out.append(Record(i, sample.key, member))
                continue
            base, data = blobs[sample.shard]
            lo = member.offset - base
            out.append(Record(i, sample.key, self._value(data[lo:lo + member.size])))
        return out

    def column_values(self, name: str) -> list[Any]:
        """A field's values per sample (``txt``, ``json``, ``cls``...) or a key of the ``json``
        member; ``None`` where a sample has none.

        :raises InputError: no sample has that field or JSON key.
        """
        values: list[Any] = []
        for s, path in enumerate(self.shards):
            data = store.read_bytes(path)
            for x in (x for x in self.samples if x.shard == s):
                values.append(_decode(x, name, data))
        if all(v is None for v in values):
            raise InputError(f"{self.path!r} has no field or JSON key {name!r}; its fields are "
                             f"{', '.join(self.fields)}.")
        return values


def _decode(sample: _Sample, name: str, data: bytes) -> Any:
    member = sample.field(name)
    if member is not None:
        raw = data[member.offset:member.offset + member.size]
        if name == "json":
            return json.loads(raw)
        if name in ("cls", "cls2", "index"):
            return int(raw.decode().strip())
        if name in ("txt", "text"):
            return raw.decode("utf-8")
        return raw
    meta = sample.field("json")
    if meta is None:
        return None
    obj = json.loads(data[meta.offset:meta.offset + meta.size])
    return obj.get(name) if isinstance(obj, dict) else None
