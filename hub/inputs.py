"""Checking what users pass to ``extract()``, before any heavy work.

Images may be PIL images (any mode), numpy arrays (HW, HWC, BHWC; uint8 or
float in [0, 1]), torch tensors (HW, CHW, BCHW; uint8 or float in [0, 1]),
file paths or encoded bytes, alone or in a list (mixed kinds and sizes allowed).
A 4-D array or tensor is a batch and is split into items. Text is a ``str``,
UTF-8 ``bytes``, or a list of them.

Every error names the offending item by its position in the input. Checks here
are cheap (types, shapes, channel counts, files exist); decoding and pixel checks
(NaN, range, decompression bombs) happen batch by batch in :mod:`hub.preprocess`,
so a long list of paths costs no memory up front.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hub.errors import InputError, ModalityError

__all__ = ["IMAGE_SUFFIXES", "as_images", "as_texts", "image_files", "is_array", "is_pil",
           "is_tensor"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                            ".ppm", ".pgm", ".pbm", ".ico", ".jp2", ".tga"})
_CHANNELS = (1, 3, 4)


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``folder``, recursively, sorted by path; hidden files and folders
    (names starting with ``.``) are skipped. The one folder walk of ``hub extract`` and the
    dataset engines."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def is_tensor(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "shape") and hasattr(x, "dtype")


def is_array(x: Any) -> bool:
    """True for a numpy array, without importing numpy."""
    return type(x).__module__ == "numpy" and hasattr(x, "shape") and hasattr(x, "dtype")


def is_pil(x: Any) -> bool:
    """True for a PIL image, without importing PIL."""
    return type(x).__module__.startswith("PIL.") and hasattr(x, "mode") and hasattr(x, "size")


def _as_list(inputs: Any, what: str) -> list[Any]:
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    elif is_tensor(inputs) and inputs.ndim == 4:
        items = list(inputs.unbind(0))  # a batch: split into items (views, no copy)
    elif is_array(inputs) and inputs.ndim == 4:
        items = list(inputs)
    else:
        items = [inputs]
    if not items:
        raise InputError(f"extract() got an empty list; pass at least one {what}.")
    return items


def _check_pixels(i: int, x: Any) -> Any:
    shape = tuple(int(s) for s in x.shape)
    if 0 in shape:
        raise InputError(f"Item {i} has an empty shape {shape}.")
    if is_tensor(x):
        if x.ndim == 2 or (x.ndim == 3 and shape[0] in _CHANNELS):
            return x
        if x.ndim == 3 and shape[-1] in _CHANNELS:
            raise InputError(f"Item {i} is a tensor of shape {shape}: tensors are channels-first "
                             f"(CHW), this looks like HWC. Pass x.permute(2, 0, 1).")
        if x.ndim == 3:
            raise InputError(f"Item {i} has {shape[0]} channels (shape {shape}); images have 1, 3 "
                             "or 4 channels (grey, RGB, RGBA).")
        raise InputError(f"Item {i} has shape {shape}; image tensors are HW, CHW, or a BCHW batch.")
    if x.ndim == 2 or (x.ndim == 3 and shape[2] in _CHANNELS):
        return x
    if x.ndim == 3 and shape[0] in _CHANNELS:
        raise InputError(f"Item {i} is an array of shape {shape}: arrays are channels-last (HWC), "
                         f"this looks like CHW. Pass x.transpose(1, 2, 0).")
    if x.ndim == 3:
        raise InputError(f"Item {i} has {shape[2]} channels (shape {shape}); images have 1, 3 or "
                         "4 channels (grey, RGB, RGBA).")
    raise InputError(f"Item {i} has shape {shape}; image arrays are HW, HWC, or a BHWC batch.")


def _check_image(i: int, x: Any, name: str) -> Any:
    if is_pil(x) or isinstance(x, (bytes, bytearray, memoryview)):
        if not is_pil(x) and len(x) == 0:
            raise InputError(f"Item {i} is empty bytes; pass encoded image bytes.")
        return x
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if p.is_file():
            return p
        if p.is_dir():
            raise InputError(f"Item {i}: {str(x)!r} is a folder; pass image files (the `hub "
                             "extract` command takes folders).")
        looks_like_path = p.suffix.lower() in IMAGE_SUFFIXES or os.sep in str(x) or "/" in str(x)
        if isinstance(x, str) and not looks_like_path:
            raise ModalityError(f"Item {i} is text ({str(x)[:40]!r}), but {name} is an image "
                                "backbone. Pass images or image file paths, or load a text backbone.")
        raise InputError(f"Item {i}: image file {str(x)!r} does not exist.")
    if is_array(x) or is_tensor(x):
        return _check_pixels(i, x)
    raise InputError(f"Item {i} is a {type(x).__name__}; image backbones take PIL images, numpy "
                     "arrays, torch tensors, file paths or image bytes.")


def as_images(inputs: Any, *, name: str = "this") -> list[Any]:
    """Validate image inputs into a list of items (not yet decoded).

    :param name: the backbone's name, for error messages.
    :raises InputError: naming the first bad item (:class:`ModalityError` for text).
    """
    return [_check_image(i, x, name) for i, x in enumerate(_as_list(inputs, "image"))]


def as_texts(inputs: Any, *, name: str = "this") -> list[str]:
    """Validate text inputs into a list of str (bytes are decoded as UTF-8).

    :param name: the backbone's name, for error messages.
    :raises InputError: naming the first bad item (:class:`ModalityError` for an image).
    """
    if isinstance(inputs, (str, bytes, bytearray)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        if is_pil(inputs) or is_tensor(inputs) or is_array(inputs):
            raise ModalityError(f"{name} is a text backbone, but an image was given. Load an image "
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
            if is_pil(x) or is_tensor(x) or is_array(x) or isinstance(x, os.PathLike):
                raise ModalityError(f"Item {i} is an image ({type(x).__name__}), but {name} is a "
                                    "text backbone. Load an image backbone for images.")
            raise InputError(f"Item {i} is a {type(x).__name__}; text backbones take str.")
        out.append(x)
    return out
