"""Image decoding and the preprocessing bound to a weight variant.

The eval transform is the one timm and torchvision use: resize the shorter side
to ``floor(size / crop_pct)`` with the variant's interpolation, centre-crop
``size`` x ``size``, scale to [0, 1], subtract ``mean`` and divide by ``std``.
A float tensor or array is taken to be in [0, 1] already; uint8 is divided by
255. Inputs already at ``size`` x ``size`` are not resized.

Colour rule: every PIL mode becomes RGB. Transparency (RGBA, LA, P with a
transparent colour) is composited on white; 16/32-bit integer images (I;16, I)
are scaled from their full range; CMYK, YCbCr and L go through PIL's
conversion. EXIF orientation is applied before anything else.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InputError
from hub.inputs import is_array, is_tensor

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from hub.manifest import ImagePreprocessing

__all__ = ["open_image", "pixel_batch", "to_rgb"]


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB by the rule in the module docstring."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() <= 65535 else float(arr.max())
        arr = np.clip(arr / max(top, 1.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(item: Any, index: int = 0) -> Image.Image:
    """Decode a path or bytes into an RGB PIL image, with EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if isinstance(item, (bytes, bytearray, memoryview)):
            img = Image.open(io.BytesIO(bytes(item)))
        elif isinstance(item, Path):
            img = Image.open(item)
        else:
            img = item
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise InputError(f"Item {index}: refused as a decompression bomb ({exc}). Raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if you trust this image.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"Item {index}: cannot decode image ({exc}).") from exc


def _resize_pil(img: Image.Image, pp: ImagePreprocessing) -> Image.Image:
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
                "lanczos": Image.LANCZOS}[pp.interpolation]
    w, h = img.size
    if (w, h) != (pp.size, pp.size):
        scale = math.floor(pp.size / pp.crop_pct)
        if w <= h:
            nw, nh = scale, int(scale * h / w)
        else:
            nw, nh = int(scale * w / h), scale
        img = img.resize((nw, nh), resample)
        left, top = int(round((nw - pp.size) / 2.0)), int(round((nh - pp.size) / 2.0))
        img = img.crop((left, top, left + pp.size, top + pp.size))
    return img


def _tensor_item(x: Any, index: int, device: torch.device) -> torch.Tensor:
    """A CHW float tensor in [0, 1] from an array or tensor item."""
    import torch

    t = torch.from_numpy(x.copy() if not x.flags.writeable else x) if is_array(x) else x
    if is_array(x):
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    elif t.ndim == 2:
        t = t.unsqueeze(0)
    t = t.to(device)
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    elif t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise InputError(f"Item {index} contains NaN or infinite pixels.")
        lo, hi = t.min().item(), t.max().item()
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"Item {index} is a float image with values in [{lo:.3g}, {hi:.3g}]; "
                             "float images must be in [0, 1] (or pass uint8).")
    else:
        raise InputError(f"Item {index} has dtype {t.dtype}; use uint8 or a float dtype.")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:  # alpha on white
        a = t[3:4]
        t = t[:3] * a + (1 - a)
    return t


def _resize_tensor(t: torch.Tensor, pp: ImagePreprocessing) -> torch.Tensor:
    import torch.nn.functional as F

    h, w = t.shape[-2:]
    if (h, w) == (pp.size, pp.size):
        return t
    scale = math.floor(pp.size / pp.crop_pct)
    nh, nw = (int(scale * h / w), scale) if w <= h else (scale, int(scale * w / h))
    mode = {"lanczos": "bicubic"}.get(pp.interpolation, pp.interpolation)
    t = F.interpolate(t.unsqueeze(0), size=(nh, nw), mode=mode,
                      antialias=mode in ("bilinear", "bicubic"),
                      align_corners=False if mode != "nearest" else None).squeeze(0)
    top, left = int(round((nh - pp.size) / 2.0)), int(round((nw - pp.size) / 2.0))
    return t[:, top:top + pp.size, left:left + pp.size].clamp_(0, 1)


def pixel_batch(items: list[Any], pp: ImagePreprocessing, *, device: torch.device,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """Decode, resize, crop and normalise a batch of image items into (B, 3, S, S)."""
    import numpy as np
    import torch

    out = []
    for i, item in enumerate(items):
        if is_tensor(item) or is_array(item):
            t = _resize_tensor(_tensor_item(item, i, device), pp)
        else:
            img = _resize_pil(open_image(item, i), pp)
            t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
            t = t.to(device).float().div_(255.0)
        out.append(t)
    x = torch.stack(out)
    mean = torch.tensor(pp.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pp.std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.to(dtype) if dtype is not None else x
