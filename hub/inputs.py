"""Checking what users pass to ``extract()``, before any heavy work.

Images may be PIL images (any mode), numpy arrays (HW, HWC, BHWC; uint8 or
float in [0, 1]), torch tensors (HW, CHW, BCHW; uint8 or float in [0, 1]),
file paths or encoded bytes, alone or in a list (mixed kinds and sizes allowed).
A 4-D array or tensor is a batch and is split into items, alone or inside a list
(``["cat.jpg", pil_image, tensor_bchw]`` is 2 + B items, in that order; item numbers
in messages, like the rows of the features, count a batch's items one by one). Text
is a ``str`` (valid Unicode: no lone surrogates), UTF-8 ``bytes``, or a list of them.
Zero-shot labels and templates are checked here too (:func:`check_labels`).

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

__all__ = ["IMAGE_SUFFIXES", "as_images", "as_texts", "check_labels", "check_unicode",
           "image_files", "is_array", "is_pil", "is_tensor"]

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


def _split(x: Any) -> list[Any]:
    """A 4-D tensor or array (a batch) as its items (views, no copy); anything else as itself."""
    if is_tensor(x) and x.ndim == 4:
        return list(x.unbind(0))
    if is_array(x) and x.ndim == 4:
        return list(x)
    return [x]


def _as_list(inputs: Any, what: str) -> list[Any]:
    if isinstance(inputs, (list, tuple)):
        items = [item for x in inputs for item in _split(x)]
    else:
        items = _split(inputs)
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
        out.append(check_unicode(x, i))
    return out


def check_unicode(text: str, index: int = 0) -> str:
    """``text`` itself when it is valid Unicode (encodable as UTF-8).

    :raises InputError: naming item ``index`` and the lone surrogate's position.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"Item {index} is not valid Unicode: character {exc.start} is a lone "
                         f"surrogate ({text[exc.start]!r}), which no tokenizer can encode. Fix how "
                         "the text was decoded (e.g. decode the bytes with errors='replace')."
                         ) from exc
    return text


def _template_fields(template: str) -> list[str] | None:
    """The replacement fields of a format string (``"a {}"`` -> ``[""]``), None if malformed."""
    import string

    try:
        return [f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"
                for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return None


def check_labels(labels: Any, templates: Any,
                 default: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Zero-shot labels and templates, checked: ``(labels, templates)`` as lists.

    Labels are non-empty strings, none repeated; each template (``default`` when ``templates``
    is None) is a string whose only replacement field is one ``{}`` (``{{`` and ``}}`` write
    braces).

    :raises InputError: naming the first bad label or template and its position.
    """
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise InputError(f"labels must be a list of strings, not {type(labels).__name__}; pass "
                         "labels=['cat', 'dog'].")
    if not labels:
        raise InputError("zero_shot() needs at least one label.")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise InputError(f"labels must be non-empty strings; label {i} is {label!r}.")
    names = list(labels)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"labels repeat: {repeated}; give each class once.")
    if isinstance(templates, str):
        raise InputError("templates must be a list of format strings, e.g. ['a photo of a {}.'].")
    temps = list(default if templates is None else templates)
    if not temps:
        raise InputError("templates must hold at least one format string with '{}'.")
    for i, t in enumerate(temps):
        fields = _template_fields(t) if isinstance(t, str) else None
        if fields != ["{}"]:
            found = "not a string" if not isinstance(t, str) else (
                "a malformed format string" if fields is None else
                f"fields {fields}" if fields else "no field")
            raise InputError(f"template {i} ({t!r}) has {found}; each template needs exactly one "
                             "'{}' for the label and no other fields (write '{{' and '}}' for "
                             "braces), e.g. 'a photo of a {}.'.")
    return names, temps
