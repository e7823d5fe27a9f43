"""Checking what users pass to ``extract()``, before any heavy work.

Images may be PIL images, numpy arrays (HW, HWC, BHWC; uint8 or float in
[0, 1]), torch tensors (CHW, BCHW; uint8 or float in [0, 1]), file paths or
encoded bytes, alone or in a list (mixed sizes allowed). Text is a ``str``, UTF-8
``bytes``, or a list of them. Every error names the offending item. Decoding
happens later, batch by batch (:mod:`hub.preprocess`), so a long list of paths
costs no memory up front.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hub.errors import InputError, ModalityError

__all__ = ["as_images", "as_texts", "is_array", "is_tensor"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def is_tensor(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "shape") and hasattr(x, "dtype")


def is_array(x: Any) -> bool:
    """True for a numpy array, without importing numpy."""
    return type(x).__module__ == "numpy" and hasattr(x, "shape")


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "mode") and hasattr(x, "size")


def _as_list(inputs: Any) -> list[Any]:
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    elif (is_tensor(inputs) and inputs.ndim == 4) or (is_array(inputs) and inputs.ndim == 4):
        items = list(inputs)  # a batch: split into items
    else:
        items = [inputs]
    if not items:
        raise InputError("extract() got an empty list; pass at least one input.")
    return items


def _check_image(i: int, x: Any) -> Any:
    if _is_pil(x) or isinstance(x, (bytes, bytearray, memoryview)):
        return x
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if p.is_file():
            return p
        looks_like_path = p.suffix.lower() in IMAGE_SUFFIXES or os.sep in str(x)
        if isinstance(x, str) and not looks_like_path:
            raise ModalityError(f"Item {i} is text ({str(x)[:40]!r}), but this is an image backbone. "
                                "Pass images or image file paths, or load a text backbone.")
        raise InputError(f"Item {i}: image file {str(x)!r} does not exist.")
    if is_array(x) or is_tensor(x):
        shape = tuple(x.shape)
        if is_tensor(x):
            ok = (x.ndim == 3 and shape[0] in (1, 3, 4)) or x.ndim == 2
            form = "CHW with 1, 3 or 4 channels"
        else:
            ok = (x.ndim == 3 and shape[2] in (1, 3, 4)) or x.ndim == 2
            form = "HW or HWC with 1, 3 or 4 channels"
        if not ok:
            raise InputError(f"Item {i} has shape {shape}; expected {form}.")
        if 0 in shape:
            raise InputError(f"Item {i} has an empty shape {shape}.")
        return x
    raise InputError(f"Item {i} is a {type(x).__name__}; image backbones take PIL images, numpy "
                     "arrays, torch tensors, file paths or image bytes.")


def as_images(inputs: Any) -> list[Any]:
    """Validate image inputs into a list of items (not yet decoded)."""
    if isinstance(inputs, str) and not Path(inputs).is_file() and Path(inputs).is_dir():
        raise InputError(f"{inputs!r} is a folder; pass a list of image files (or use `hub extract`).")
    return [_check_image(i, x) for i, x in enumerate(_as_list(inputs))]


def as_texts(inputs: Any) -> list[str]:
    """Validate text inputs into a list of str (bytes are decoded as UTF-8)."""
    if isinstance(inputs, (str, bytes)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        if _is_pil(inputs) or is_tensor(inputs) or is_array(inputs):
            raise ModalityError("This is a text backbone, but an image was given. Load an image "
                                "backbone for images.")
        raise InputError(f"Text backbones take a str or a list of str, not {type(inputs).__name__}.")
    if not inputs:
        raise InputError("extract() got an empty list; pass at least one text.")
    out = []
    for i, x in enumerate(inputs):
        if isinstance(x, (bytes, bytearray)):
            try:
                x = bytes(x).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"Item {i} is bytes that are not valid UTF-8 (at byte {exc.start}). "
                                 "Decode it yourself with the right encoding.") from exc
        if not isinstance(x, str):
            if _is_pil(x) or is_tensor(x) or is_array(x) or isinstance(x, os.PathLike):
                raise ModalityError(f"Item {i} is an image ({type(x).__name__}), but this is a text "
                                    "backbone. Load an image backbone for images.")
            raise InputError(f"Item {i} is a {type(x).__name__}; text backbones take str.")
        out.append(x)
    return out
