"""What a labelled dataset is, by content: the key of its cached features and of its records.

:func:`items_digest` hashes every row's item in row order: an image file by the sha256 of
its bytes, image bytes and texts by theirs, a row that cannot give an item by its reason.
Paths, file names and modification times take no part, so the digest is the same for a
copy, a move, a re-download or an ImageFolder and a CSV listing the same files in the same
order, and it changes when any byte of any item changes, even one edited in place with
its modification time restored.

Why content and not ``(path, size, mtime)``: a stat-based key misses (re-extracts) on every
copy or checkout, and can hit wrongly when a file is rewritten within the clock's
resolution; reading the bytes costs far less than the forward pass it guards (sha256 runs
at about 1 GB/s here, a 100 kB photo in 0.1 ms, against milliseconds per image for even
the smallest backbone on a CPU; docs/choosing.md gives the measured figures).

:func:`dataset_fingerprint` adds the labels: two labellings of the same items share their
features but are two datasets for the records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hub.cache import sha256_file
from hub.dataset.readers import Failure, Reader

__all__ = ["dataset_fingerprint", "items_digest"]

_BLOCK = 1024  # rows read at a time


def items_digest(reader: Reader) -> str:
    """sha256 (hex) over the content of every row's item, in row order, and the modality."""
    h = hashlib.sha256(f"hub-probe-items/1 {reader.modality}\n".encode())
    for start in range(0, len(reader), _BLOCK):
        for rec in reader.read(start, start + _BLOCK):
            h.update(_value_digest(rec.value).encode() + b"\n")
    return h.hexdigest()


def _value_digest(value: Any) -> str:
    if isinstance(value, Failure):
        return "failure " + hashlib.sha256(value.reason.encode()).hexdigest()
    if isinstance(value, Path):
        try:
            return "file " + sha256_file(value)
        except OSError as exc:  # the extraction skips it too, and says why
            return f"unreadable {type(exc).__name__} {exc.errno}"
    if isinstance(value, (bytes, bytearray)):
        return "bytes " + hashlib.sha256(value).hexdigest()
    return "text " + hashlib.sha256(str(value).encode("utf-8", "surrogateescape")).hexdigest()


def dataset_fingerprint(items: str, labels: list[str | None]) -> str:
    """A 16-hex-digit id of a labelled dataset: its :func:`items_digest` and every row's label."""
    text = json.dumps({"items": items, "labels": labels}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
