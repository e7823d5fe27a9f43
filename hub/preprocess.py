"""Image decoding and the preprocessing bound to a weight variant.

The eval transform is the one timm and torchvision use: resize the shorter side
to ``floor(size / crop_pct)`` with the variant's interpolation, centre-crop
``size`` x ``size``, scale to [0, 1], subtract ``mean`` and divide by ``std``.
``resize_mode: squash`` (SigLIP) resizes to ``size`` x ``size`` whatever the aspect
ratio, without a crop.
PIL images, files and bytes are resized with PIL (as timm's transform does);
arrays and tensors with ``torch.nn.functional.interpolate`` (antialiased), on
the backbone's device. Inputs already at ``size`` x ``size`` are not resized.

Colour rule: every image becomes RGB, in this order:

1. EXIF orientation is applied (files, bytes and PIL images).
2. Transparency (RGBA, LA, PA, La, RGBa, and P with a transparent colour) is
   composited on white.
3. High-bit-depth greyscale: ``I;16*`` is scaled from 0..65535 to 0..255. ``I``
   (32-bit) and ``F`` (float) are read as 8-bit when every value fits 0..255
   (``F`` in [0, 1] is multiplied by 255), as 16-bit when it fits 0..65535, else
   scaled by the image's maximum; negatives become 0.
4. Every other mode (1, L, P, CMYK, YCbCr, LAB, HSV, RGBX) goes through PIL's
   ``convert("RGB")``.

Arrays and tensors: uint8 is divided by 255, float must already be in [0, 1];
1 channel is repeated to 3, 4 channels are RGBA (composited on white).

Size limit (``HUB_MAX_IMAGE_PIXELS``, :mod:`hub.config`): a file's or bytes' pixel count is
read from its header and refused before it is decoded; every image's size after the resize is
computed and refused before the resize when over the same limit (resizing the shorter side of
a 20000 x 1 strip to 256 would make a 5,120,000 x 256 image).
"""

from __future__ import annotations

import functools
import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import max_image_pixels
from hub.errors import HubError, InputError
from hub.inputs import is_array, is_tensor

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from hub.manifest import ImagePreprocessing

__all__ = ["decode_resize", "open_image", "pixel_batch", "to_rgb"]

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_POOL: ThreadPoolExecutor | None = None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB by the colour rule in the module docstring."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in _DEEP_MODES:
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, None)
        top = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif img.mode == "F" and top <= 1.0:
            scale = 255.0
        elif top <= 255.0:
            scale = 1.0
        elif top <= 65535.0:
            scale = 255.0 / 65535.0
        else:
            scale = 255.0 / top
        grey = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode == "RGB":
            return img
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBa").convert("RGBA") if img.mode == "La" else img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(item: Any, index: int = 0) -> Image.Image:
    """Decode a path, bytes or PIL image into an RGB PIL image, EXIF orientation applied.

    :param index: the item's position in the user's input, for error messages.
    :raises InputError: on undecodable data or a decompression bomb (Pillow's pixel limit,
        ``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image
            if isinstance(item, (bytes, bytearray, memoryview)):
                img = Image.open(io.BytesIO(bytes(item)))
            elif isinstance(item, (str, os.PathLike)):
                img = Image.open(Path(item))
            else:
                img = item
            _check_pixels(index, *img.size, "has")  # from the header: before decoding
            img.load()
        if img.getexif().get(0x0112, 1) != 1:  # Orientation tag
            img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except HubError:  # the size limit, or its setting
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"Item {index}: refused as a possible decompression bomb ({exc}). Raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if you trust this image.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Item {index}: cannot decode image ({exc}).") from exc


def _check_pixels(index: int, w: int, h: int, verb: str) -> None:
    """Refuse an image of ``w`` x ``h`` over ``HUB_MAX_IMAGE_PIXELS`` (item ``index``)."""
    limit = max_image_pixels()
    if w * h > limit:
        raise InputError(f"Item {index} {verb} {w:,} x {h:,} = {w * h:,} pixels, over the limit of "
                         f"{limit:,} (HUB_MAX_IMAGE_PIXELS). Crop or shrink the image, or raise "
                         "HUB_MAX_IMAGE_PIXELS if you trust it.")


def _check_resize(index: int, w: int, h: int, pp: ImagePreprocessing) -> tuple[int, int]:
    """The size ``w`` x ``h`` resizes to, refused (naming item ``index``) when over the limit."""
    nw, nh = _resized_size(w, h, pp)
    if nw * nh > max_image_pixels():
        _check_pixels(index, nw, nh, f"({w:,} x {h:,}, resized for the {pp.size}-pixel input) "
                      "would become")
    return nw, nh


def _resized_size(w: int, h: int, pp: ImagePreprocessing) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to floor(size / crop_pct) (``squash``:
    size x size)."""
    if pp.resize_mode == "squash":
        return pp.size, pp.size
    scale = math.floor(pp.size / pp.crop_pct)
    return (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)


def _crop_box(nw: int, nh: int, size: int) -> tuple[int, int]:
    return round((nw - size) / 2.0), round((nh - size) / 2.0)


def decode_resize(item: Any, index: int, pp: ImagePreprocessing) -> Any:
    """Decode one image item (path, bytes or PIL image) and resize and centre-crop it with PIL
    as the weights' preprocessing says; returns an (S, S, 3) uint8 array.

    The one decode/resize/crop of hub: :meth:`hub.Backbone.extract` runs it for PIL images and
    files, the dataset engines in their worker processes.

    :raises InputError: when the image cannot be read or decoded (naming item ``index``).
    """
    import numpy as np
    from PIL import Image

    img = open_image(item, index)
    if img.size != (pp.size, pp.size):
        rs = Image.Resampling
        resample = {"bilinear": rs.BILINEAR, "bicubic": rs.BICUBIC, "nearest": rs.NEAREST,
                    "lanczos": rs.LANCZOS}[pp.interpolation]
        nw, nh = _check_resize(index, *img.size, pp)
        img = img.resize((nw, nh), resample)
        left, top = _crop_box(nw, nh, pp.size)
        img = img.crop((left, top, left + pp.size, top + pp.size))
    return np.asarray(img, dtype=np.uint8)


def _decode_all(items: list[Any], indices: list[int], pp: ImagePreprocessing) -> list[Any]:
    """Decode several images, on a few threads (Pillow releases the GIL while decoding)."""
    global _POOL
    if len(items) < 2:
        return [decode_resize(it, i, pp) for it, i in zip(items, indices, strict=True)]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                   thread_name_prefix="hub-decode")
    return list(_POOL.map(lambda a: decode_resize(a[0], a[1], pp), zip(items, indices, strict=True)))


def _check_float(t: torch.Tensor, indices: list[int], items: list[torch.Tensor]) -> None:
    """One check for NaN/inf and the [0, 1] range; names the first bad item when it fails."""
    import torch

    lo, hi = torch.stack(torch.aminmax(t)).float().tolist()
    if math.isfinite(lo) and math.isfinite(hi) and lo >= -1e-3 and hi <= 1 + 1e-3:
        return
    for i, x in zip(indices, items, strict=True):
        lo, hi = torch.stack(torch.aminmax(x)).float().tolist()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"Item {i} contains NaN or infinite pixels.")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"Item {i} is a float image with values in [{lo:.3g}, {hi:.3g}]; "
                             "float images must be in [0, 1] (or pass uint8).")


def _unit_group(items: list[Any], indices: list[int], device: torch.device) -> torch.Tensor:
    """Same-shape, same-dtype arrays (HW, HWC) or tensors (HW, CHW) as one (G, 3, H, W) float
    batch in [0, 1].

    One stacked conversion per group, not one per item (a long list of equal-size arrays
    costs a handful of tensor ops), and the dtype is converted in the data's own memory order,
    the channel axis moved afterwards as a view: converting uint8 through a permuted view is
    many times slower on the CPU.
    """
    import numpy as np
    import torch

    hwc = is_array(items[0])
    if hwc:
        t = torch.from_numpy(np.stack(items) if len(items) > 1 else np.array(items[0])[None])
    else:
        view = _batch_view(items)
        t = view if view is not None else torch.stack([x.to(device, non_blocking=True) for x in items])
    t = t.to(device, non_blocking=True)
    if t.ndim == 3:  # HW items
        t = t.unsqueeze(-1 if hwc else 1)
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    elif t.is_floating_point():
        t = t.float()
        _check_float(t, indices, list(t))
    else:
        raise InputError(f"Item {indices[0]} has dtype {t.dtype}; use uint8, or float in [0, 1].")
    if hwc:
        t = t.permute(0, 3, 1, 2)
    if t.shape[1] == 1:
        return t.expand(-1, 3, -1, -1)
    if t.shape[1] == 4:  # RGBA: alpha composited on white
        a = t[:, 3:4]
        return t[:, :3] * a + (1 - a)
    return t


def _batch_view(items: list[Any]) -> torch.Tensor | None:
    """The slice of the caller's batch tensor that ``items`` are consecutive rows of, or None.

    A BCHW tensor passed to extract() is split into row views; taking the slice back is free,
    where stacking the views copies (and is slow on a busy CPU: one parallel copy per row).
    """
    base = items[0]._base
    if base is None or base.ndim != items[0].ndim + 1 or tuple(base.shape[1:]) != tuple(items[0].shape):
        return None
    step, first = base.stride(0), items[0].storage_offset()
    if any(x._base is not base or x.storage_offset() != first + i * step for i, x in enumerate(items)):
        return None
    start = (first - base.storage_offset()) // step if step else 0
    return base[start:start + len(items)] if step else None


def _resize_tensor(t: torch.Tensor, pp: ImagePreprocessing, index: int) -> torch.Tensor:
    """Resize a (G, C, H, W) batch's shorter side to floor(size / crop_pct), centre-crop size
    (``index``: the first item's position, for the size limit's message)."""
    import torch.nn.functional as F

    h, w = t.shape[-2:]
    if (h, w) == (pp.size, pp.size):
        return t
    nw, nh = _check_resize(index, int(w), int(h), pp)
    mode = {"lanczos": "bicubic"}.get(pp.interpolation, pp.interpolation)
    t = F.interpolate(t, size=(nh, nw), mode=mode, antialias=mode in ("bilinear", "bicubic"),
                      align_corners=False if mode != "nearest" else None)
    left, top = _crop_box(nw, nh, pp.size)
    return t[:, :, top:top + pp.size, left:left + pp.size].clamp_(0, 1)


def pixel_batch(items: list[Any], pp: ImagePreprocessing, *, device: torch.device,
                dtype: torch.dtype | None = None, indices: list[int] | None = None,
                channels_last: bool = False) -> torch.Tensor:
    """Decode, resize, crop and normalise a batch of image items into (B, 3, S, S).

    PIL images, paths and bytes are decoded and resized with PIL (on threads); arrays and
    tensors are grouped by shape and dtype and converted and resized group by group on
    ``device``.

    :param indices: the items' positions in the user's input, for error messages.
    :param dtype: the dtype of the returned batch (default float32).
    :param channels_last: return the batch in the channels_last memory format.
    """
    import numpy as np
    import torch

    if not items:
        raise InputError("pixel_batch() got no items.")
    idx = list(range(len(items))) if indices is None else list(indices)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for k, it in enumerate(items):
        key = ("pil",) if not (is_tensor(it) or is_array(it)) else \
            (is_array(it), tuple(it.shape), str(it.dtype), str(getattr(it, "device", "")))
        groups.setdefault(key, []).append(k)
    parts, order = [], []
    for key, ks in groups.items():
        if key == ("pil",):
            arrays = _decode_all([items[k] for k in ks], [idx[k] for k in ks], pp)
            u8 = torch.from_numpy(np.stack(arrays)).to(device, non_blocking=True)  # (G, S, S, 3)
            parts.append(u8.permute(0, 3, 1, 2).float().div_(255.0))  # converted in memory order
        else:
            shape = items[ks[0]].shape  # HW, HWC (arrays) or CHW (tensors)
            w, h = (shape[1], shape[0]) if key[0] or len(shape) == 2 else (shape[2], shape[1])
            _check_resize(idx[ks[0]], int(w), int(h), pp)  # before the pixels are converted
            unit = _unit_group([items[k] for k in ks], [idx[k] for k in ks], device)
            parts.append(_resize_tensor(unit, pp, idx[ks[0]]))
        order.extend(ks)
    x = parts[0] if len(parts) == 1 else torch.cat(parts)
    if order != list(range(len(items))):  # back to input order
        x = x[torch.from_numpy(np.argsort(order)).to(x.device)]
    y = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # x may still be the caller's own float batch (at size, on this device): never write to it
    shared = y.data_ptr() == x.data_ptr() and any(
        is_tensor(it) and it.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        for it in items)
    mean, std = _mean_std(pp.mean, pp.std, y.device)
    y = (torch.sub(y, mean) if shared else y.sub_(mean)).div_(std)
    return y.to(dtype) if dtype is not None else y


@functools.lru_cache(maxsize=32)
def _mean_std(mean: tuple[float, ...], std: tuple[float, ...],
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    return (torch.tensor(mean, device=device).view(1, 3, 1, 1),
            torch.tensor(std, device=device).view(1, 3, 1, 1))
