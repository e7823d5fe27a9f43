"""Image decoding and the preprocessing bound to a weight variant.

The eval transform is the one timm and torchvision use: resize the shorter side
to ``floor(size / crop_pct)`` with the variant's interpolation, centre-crop
``size`` x ``size``, scale to [0, 1], subtract ``mean`` and divide by ``std``.
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
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError
from hub.inputs import is_array, is_tensor

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from hub.manifest import ImagePreprocessing

__all__ = ["open_image", "pixel_batch", "to_rgb"]

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
            if isinstance(item, (bytes, bytearray, memoryview)):
                img = Image.open(io.BytesIO(bytes(item)))
            elif isinstance(item, (str, os.PathLike)):
                img = Image.open(Path(item))
            else:
                img = item
            img.load()
        if img.getexif().get(0x0112, 1) != 1:  # Orientation tag
            img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"Item {index}: refused as a possible decompression bomb ({exc}). Raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if you trust this image.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Item {index}: cannot decode image ({exc}).") from exc


def _resized_size(w: int, h: int, pp: ImagePreprocessing) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to floor(size / crop_pct)."""
    scale = math.floor(pp.size / pp.crop_pct)
    return (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)


def _crop_box(nw: int, nh: int, size: int) -> tuple[int, int]:
    return int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))


def _decode_resize(item: Any, index: int, pp: ImagePreprocessing) -> Any:
    """Decode one image item and resize/crop it with PIL; returns an (S, S, 3) uint8 array."""
    import numpy as np
    from PIL import Image

    img = open_image(item, index)
    if img.size != (pp.size, pp.size):
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
                    "lanczos": Image.LANCZOS}[pp.interpolation]
        nw, nh = _resized_size(*img.size, pp)
        img = img.resize((nw, nh), resample)
        left, top = _crop_box(nw, nh, pp.size)
        img = img.crop((left, top, left + pp.size, top + pp.size))
    return np.asarray(img, dtype=np.uint8)


def _decode_all(items: list[Any], indices: list[int], pp: ImagePreprocessing) -> list[Any]:
    """Decode several images, on a few threads (Pillow releases the GIL while decoding)."""
    global _POOL
    if len(items) < 2:
        return [_decode_resize(it, i, pp) for it, i in zip(items, indices)]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                   thread_name_prefix="hub-decode")
    return list(_POOL.map(lambda a: _decode_resize(a[0], a[1], pp), zip(items, indices)))


def _as_chw(x: Any, device: torch.device) -> torch.Tensor:
    """An array (HW, HWC) or tensor (HW, CHW) as a CHW tensor on ``device`` (no value change)."""
    import numpy as np
    import torch

    if is_array(x):
        if x.dtype == np.float64:
            x = x.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(x) if x.flags.writeable else np.array(x))
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    else:
        t = x.unsqueeze(0) if x.ndim == 2 else x
    return t.to(device, non_blocking=True)


def _check_float(t: torch.Tensor, indices: list[int], items: list[torch.Tensor]) -> None:
    """One check for NaN/inf and the [0, 1] range; names the first bad item when it fails."""
    import torch

    lo, hi = torch.stack(torch.aminmax(t)).float().tolist()
    if math.isfinite(lo) and math.isfinite(hi) and lo >= -1e-3 and hi <= 1 + 1e-3:
        return
    for i, x in zip(indices, items):
        lo, hi = torch.stack(torch.aminmax(x)).float().tolist()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"Item {i} contains NaN or infinite pixels.")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"Item {i} is a float image with values in [{lo:.3g}, {hi:.3g}]; "
                             "float images must be in [0, 1] (or pass uint8).")


def _to_unit(t: torch.Tensor, index: int) -> torch.Tensor:
    """A CHW uint8/float tensor as float32 in [0, 1] with 3 channels."""
    import torch

    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    elif t.is_floating_point():
        t = t.float()
        _check_float(t, [index], [t])
    else:
        raise InputError(f"Item {index} has dtype {t.dtype}; use uint8, or float in [0, 1].")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:  # RGBA: alpha composited on white
        a = t[3:4]
        t = t[:3] * a + (1 - a)
    return t


def _resize_tensor(t: torch.Tensor, pp: ImagePreprocessing) -> torch.Tensor:
    import torch.nn.functional as F

    h, w = t.shape[-2:]
    if (h, w) == (pp.size, pp.size):
        return t
    nw, nh = _resized_size(w, h, pp)
    mode = {"lanczos": "bicubic"}.get(pp.interpolation, pp.interpolation)
    t = F.interpolate(t.unsqueeze(0), size=(nh, nw), mode=mode,
                      antialias=mode in ("bilinear", "bicubic"),
                      align_corners=False if mode != "nearest" else None).squeeze(0)
    left, top = _crop_box(nw, nh, pp.size)
    return t[:, top:top + pp.size, left:left + pp.size].clamp_(0, 1)


def pixel_batch(items: list[Any], pp: ImagePreprocessing, *, device: torch.device,
                dtype: torch.dtype | None = None, indices: list[int] | None = None,
                channels_last: bool = False) -> torch.Tensor:
    """Decode, resize, crop and normalise a batch of image items into (B, 3, S, S).

    :param indices: the items' positions in the user's input, for error messages.
    :param dtype: the dtype of the returned batch (default float32).
    :param channels_last: return the batch in the channels_last memory format.
    """
    import numpy as np
    import torch

    idx = list(range(len(items))) if indices is None else list(indices)
    decoded = [k for k, it in enumerate(items) if not (is_tensor(it) or is_array(it))]
    slots: list[Any] = [None] * len(items)
    if decoded:
        arrays = _decode_all([items[k] for k in decoded], [idx[k] for k in decoded], pp)
        u8 = torch.from_numpy(np.stack(arrays)).to(device, non_blocking=True)
        for k, t in zip(decoded, u8.permute(0, 3, 1, 2)):
            slots[k] = t
    raw = {k: _as_chw(items[k], device) for k in range(len(items)) if slots[k] is None}
    same = [t for t in raw.values()]
    if same and len(same) == len(items) and all(t.shape == same[0].shape and t.dtype == same[0].dtype
                                                for t in same) \
            and same[0].is_floating_point() and tuple(same[0].shape) == (3, pp.size, pp.size):
        x = torch.stack(same).float()  # the common case: one float batch already at size
        _check_float(x, idx, same)
    else:
        for k, t in raw.items():
            slots[k] = _resize_tensor(_to_unit(t, idx[k]), pp)
        x = torch.stack([t.float().div_(255.0) if t.dtype == torch.uint8 else t for t in slots])
    mean = torch.tensor(pp.mean, device=device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pp.std, device=device, dtype=x.dtype).view(1, 3, 1, 1)
    x = x.sub_(mean).div_(std)
    if dtype is not None:
        x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
