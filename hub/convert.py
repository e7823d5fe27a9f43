"""Checkpoint formats: safetensors validation and one-time pickle conversion.

The cache only ever serves safetensors. A pickle checkpoint (``.pth``/``.bin``)
is read once with ``torch.load(weights_only=True)`` -- which refuses any pickle
opcode that would build an arbitrary object -- passed through the named
converter a plugin registered, and written as safetensors.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.errors import CacheError, ConversionError, UnsafeWeightsError

__all__ = ["MAX_HEADER_BYTES", "convert_pickle", "validate_safetensors"]

#: safetensors' own limit on the JSON header.
MAX_HEADER_BYTES = 100_000_000
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def validate_safetensors(path: Path) -> dict[str, dict[str, Any]]:
    """Check a safetensors file's structure without loading tensors.

    Checks the header length, the JSON header, each tensor's dtype, shape and
    offsets (inside the data, sized by shape x dtype, not overlapping, covering
    the data exactly).

    :returns: the tensor table of the header (without ``__metadata__``).
    :raises UnsafeWeightsError: naming the file and what is wrong.
    """
    def bad(why: str) -> UnsafeWeightsError:
        return UnsafeWeightsError(f"{path.name} is not a valid safetensors file: {why}. "
                                  "Delete it and pull again; if the source serves it, report it.")

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise bad("shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise bad(f"header of {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
        if 8 + n > size:
            raise bad(f"header length {n} runs past the end of the {size}-byte file")
        raw = fh.read(n)
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("a key appears twice")
        return out

    try:
        header = json.loads(raw, object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"header is not valid JSON ({str(exc)[:120]})") from exc
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} has a malformed entry")
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) for o in offs)):
            raise bad(f"tensor {name!r} has a malformed shape or offsets")
        begin, end = offs
        count = 1
        for d in shape:
            count *= d
        if not 0 <= begin <= end <= data_len:
            raise bad(f"tensor {name!r} offsets {offs} fall outside the {data_len}-byte data")
        if end - begin != count * _DTYPE_BYTES[dtype]:
            raise bad(f"tensor {name!r} spans {end - begin} bytes but shape {shape} of {dtype} "
                      f"needs {count * _DTYPE_BYTES[dtype]}")
        spans.append((begin, end, name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin < cursor:
            raise bad(f"tensor {name!r} overlaps the previous tensor")
        if begin > cursor:
            raise bad(f"a gap of {begin - cursor} bytes precedes tensor {name!r}")
        cursor = end
    if cursor != data_len:
        raise bad(f"{data_len - cursor} trailing bytes after the last tensor")
    return header


def _state_dict_of(obj: Any, path: Path) -> dict[str, Any]:
    import torch

    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path.name} holds no state dict (got {type(obj).__name__}).")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ConversionError(f"{path.name}: entry {k!r} is a {type(v).__name__}, not a tensor.")
        out[k] = v
    return out


_MAGIC = [(b"PK\x03\x04", "zip"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x1f\x8b", "gzip"),
          (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"Rar!", "rar")]


def _sniff(path: Path) -> str:
    """What a checkpoint file is, from its first bytes: ``torch-zip``, ``pickle`` or an archive."""
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(8)
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), "pickle")
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ConversionError(f"{path.name} is a damaged zip archive ({exc}).") from exc
        if any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
            return "torch-zip"
        raise ConversionError(
            f"{path.name} is a zip archive but not a torch checkpoint (no <name>/data.pkl; it holds "
            f"{', '.join(names[:5]) or 'nothing'}). backbone-hub does not unpack archives and never "
            "unpickles files from them. Use a safetensors source for this model.")
    if kind != "pickle":
        raise ConversionError(
            f"{path.name} is a {kind} archive, not a torch checkpoint. backbone-hub does not unpack "
            "archives. Use a safetensors source for this model.")
    return kind


def _refusal(exc: BaseException) -> str:
    """The useful part of torch's weights-only refusal, without its advice to load unsafely."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = " ".join(text.split())
    for cut in (" Please use `torch.serialization", " Check the documentation"):
        text = text.split(cut, 1)[0]
    return text[:300]


def convert_pickle(src: Path, dst: Path,
                   converter: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> int:
    """Convert a pickle checkpoint to safetensors, safely.

    The file is first identified by its magic bytes: archives other than torch's own
    zip layout (a zip around a pickle, 7z, gzip, ...) are refused unopened. A torch
    checkpoint is read with ``torch.load(weights_only=True)``, whose unpickler refuses
    every global that is not a tensor type, so nothing in the file can run.

    :param src: the checkpoint (a plain or zip-wrapped torch pickle).
    :param dst: where to write the safetensors file (its folder must exist).
    :param converter: maps foreign key names onto the architecture's; ``None`` keeps them.
    :returns: the number of tensors written.
    :raises UnsafeWeightsError: when the pickle would build arbitrary objects (nothing is run).
    :raises ConversionError: when it is an archive, holds no state dict, or the converter fails.
    :raises CacheError: when the disk fills up while writing (``dst`` is removed).
    """
    import pickle

    import torch
    from safetensors.torch import save

    _sniff(src)
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f"{src.name} was refused by the safe unpickler: it holds something other than tensors "
            f"and plain containers ({_refusal(exc)}). Nothing in it was run. Use a safetensors "
            "source for this model.") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ConversionError(f"{src.name} is not a readable torch checkpoint ({exc}).") from exc
    state = _state_dict_of(obj, src)
    if converter is not None:
        try:
            state = converter(state)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ConversionError(f"Converting {src.name} failed in its key converter: {exc}.") from exc
    # safetensors refuses shared or non-contiguous storage: give each tensor its own
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    data = save(state, metadata={"format": "pt", "converted_from": src.name})
    _write(dst, data)
    return len(state)


def _write(dst: Path, data: bytes) -> None:
    """Write ``data`` to ``dst`` and sync it; on any failure remove ``dst``."""
    import os

    from hub.diskspace import disk_full_error, is_disk_full

    try:
        with open(dst, "wb") as fh:
            view = memoryview(data)
            for start in range(0, len(view), 1 << 24):
                fh.write(view[start:start + (1 << 24)])
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        dst.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(dst.parent, f"writing the converted {dst.name}", exc,
                                  needed=len(data)) from exc
        raise CacheError(f"Cannot write {dst} ({exc.strerror}).") from exc
