"""Image inputs of ``hub serve``: ``data:image/...;base64,`` URIs (and, when the operator allows
them, ``http(s)://`` URLs) decoded into RGB images.

The pixel limit is checked from the image header, before any pixel is decoded, so a small file
that would decompress into gigabytes (a decompression bomb) is refused for the cost of reading its
header. Every error is an :class:`~hub.errors.InputError` naming the item's index in the request.
"""

from __future__ import annotations

import base64
import binascii
import io
import urllib.request
from typing import Any

from hub.errors import InputError

__all__ = ["DATA_PREFIX", "decode_image", "is_image_ref"]

DATA_PREFIX = "data:image/"
_REMOTE = ("http://", "https://")


def is_image_ref(text: str) -> bool:
    """Whether an input string names an image (a data URI or an http(s) URL) rather than text."""
    head = text[:16].lower()
    return head.startswith(DATA_PREFIX) or head.startswith(_REMOTE)


def _data_bytes(uri: str, index: int) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise InputError(f"Item {index}: an image data URI must read 'data:image/<type>;base64,"
                         "<data>'; send the image base64-encoded.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"Item {index}: the image data URI is not valid base64 ({exc}).") from exc


def _remote_bytes(url: str, index: int, max_bytes: int) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            data: bytes = resp.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"Item {index}: cannot fetch {url!r} ({exc}).") from exc
    if len(data) > max_bytes:
        raise InputError(f"Item {index}: {url!r} is over {max_bytes:,} bytes.")
    return data


def decode_image(ref: str, index: int, *, max_pixels: int, allow_remote: bool = False,
                 max_bytes: int = 32 * 1024 * 1024) -> Any:
    """Decode one image input into an RGB PIL image.

    :param ref: a ``data:image/...;base64,`` URI, or an ``http(s)://`` URL.
    :param index: the item's position in the request (for messages).
    :param max_pixels: the most pixels the image may have, checked from its header.
    :param allow_remote: fetch ``http(s)://`` URLs (refused otherwise).
    :raises InputError: naming the item: a remote URL not allowed, bad base64, an undecodable
        image, or one over ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    from hub.preprocess import open_image

    if ref[:8].lower().startswith(_REMOTE):
        if not allow_remote:
            raise InputError(f"Item {index}: remote image URLs are refused by this server; send the "
                             "image as a 'data:image/<type>;base64,' URI (the operator may allow "
                             "URLs with `hub serve --allow-remote-images`).")
        data = _remote_bytes(ref, index, max_bytes)
    elif ref[:16].lower().startswith(DATA_PREFIX):
        data = _data_bytes(ref, index)
    else:
        raise InputError(f"Item {index}: not an image; send a 'data:image/<type>;base64,' URI.")
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            w, h = probe.size
    except Image.DecompressionBombError as exc:  # Pillow's own ceiling, past twice its limit
        raise InputError(f"Item {index}: refused as a decompression bomb ({exc}); send a smaller "
                         "image.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Item {index}: cannot decode image ({exc}).") from exc
    if w * h > max_pixels:
        raise InputError(f"Item {index} has {w:,} x {h:,} = {w * h:,} pixels, over this server's "
                         f"limit of {max_pixels:,}; send a smaller image.")
    return open_image(data, index)
