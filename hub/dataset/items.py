"""Turning a range of source rows into model-ready items, in a worker process.

Images are decoded and resized and centre-cropped with the weights'
preprocessing (:mod:`hub.preprocess`, the same code :meth:`hub.Backbone.extract`
runs) into ``uint8`` pixels of ``size`` x ``size``; scaling and mean/std
normalisation happen with the model, so a worker ships 1 byte per pixel, not 4.
Text is decoded and checked; tokenisation happens with the model (fast
tokenisers are native code and quick). An item that cannot be read becomes an
:class:`ItemError` and the rest of the batch goes on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.dataset.readers import Failure, Reader
from hub.errors import InputError
from hub.inputs import check_unicode

if TYPE_CHECKING:
    from hub.manifest import ImagePreprocessing

__all__ = ["ItemError", "Prepared", "chw_pixels", "prepare_range"]


@dataclass(frozen=True)
class ItemError:
    """A row that gave no features, and why."""

    index: int
    id: str | int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "reason": self.reason}


@dataclass
class Prepared:
    """A batch of rows ready for the model.

    :param indices: source rows of the good items, in order.
    :param ids: their ids.
    :param items: images: a ``uint8`` array (B, S, S, 3); text: a list of str.
    :param errors: the rows of the range that failed.
    """

    indices: list[int]
    ids: list[str | int]
    items: Any
    errors: list[ItemError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


#: What Pillow's decoders raise on some malformed files, besides the OSError/ValueError that
#: :func:`hub.preprocess.open_image` already turns into InputError.
_DECODER_FAILURES = (EOFError, IndexError, KeyError, ZeroDivisionError, struct.error)


def image_pixels(value: Any, pp: ImagePreprocessing, index: int = 0) -> Any:
    """Decode a path or bytes, resize and crop: a ``uint8`` (S, S, 3) array.

    The same decode/resize/crop as :func:`hub.preprocess.pixel_batch` (one function).

    :raises InputError: when the image cannot be read or decoded.
    """
    from hub.preprocess import decode_resize

    try:
        return decode_resize(value, index, pp)
    except _DECODER_FAILURES as exc:
        raise InputError(f"Item {index}: cannot decode image ({type(exc).__name__}: {exc}).") \
            from exc


def prepare_range(reader: Reader, start: int, stop: int, pp: ImagePreprocessing | None) -> Prepared:
    """Read rows ``start``..``stop - 1`` of ``reader`` and prepare them (``pp`` for images)."""
    import numpy as np

    indices: list[int] = []
    ids: list[str | int] = []
    items: list[Any] = []
    errors: list[ItemError] = []
    for rec in reader.read(start, stop):
        value = rec.value
        if isinstance(value, Failure):
            errors.append(ItemError(rec.index, rec.id, value.reason))
            continue
        try:
            if pp is not None:
                value = image_pixels(value, pp, rec.index)
            elif isinstance(value, str):  # a JSON "\ud800" escape decodes to a lone surrogate
                check_unicode(value, rec.index)
        except InputError as exc:
            errors.append(ItemError(rec.index, rec.id, _reason(exc)))
            continue
        indices.append(rec.index)
        ids.append(rec.id)
        items.append(value)
    if pp is not None:
        size = pp.size
        batch = np.stack(items) if items else np.zeros((0, size, size, 3), dtype=np.uint8)
        return Prepared(indices, ids, batch, errors)
    return Prepared(indices, ids, items, errors)


def chw_pixels(pixels: Any) -> Any:
    """Decoded ``uint8`` pixels (B, S, S, 3), as the workers hand them over, as one contiguous
    (B, 3, S, S) tensor: the form :meth:`hub.Backbone.extract` converts fastest (a permuted
    view would be converted to float item by item, about 40x slower)."""
    import torch

    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def _reason(exc: InputError) -> str:
    """The error text without the positional "Item N: " prefix (the record has the id)."""
    import re

    return re.sub(r"^Item \d+: ", "", str(exc))
