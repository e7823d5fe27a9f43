"""``torchvision.transforms.v2`` pipelines bound to a weight variant's preprocessing.

Eval: exactly what ``extract()`` does to a PIL image, path or bytes (hub's own decode, colour
rule, resize of the shorter side to ``floor(size / crop_pct)`` with the variant's interpolation
and centre crop, :func:`hub.preprocess.decode_resize`), then float in [0, 1] and normalisation.
Train: RGB, ``RandomResizedCrop(size)`` with the variant's interpolation, horizontal flip,
float, normalisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hub.manifest import ImagePreprocessing

__all__ = ["EvalResize", "ToRGB", "image_transforms"]


def _interpolation(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST, "lanczos": InterpolationMode.LANCZOS}[name]


class EvalResize(torch.nn.Module):
    """hub's decode + resize + centre crop (PIL images, paths, bytes) -> (S, S, 3) uint8."""

    def __init__(self, pp: ImagePreprocessing) -> None:
        super().__init__()
        self.pp = pp

    def forward(self, item: Any) -> Any:
        from hub.preprocess import decode_resize

        if isinstance(item, torch.Tensor):  # already decoded: torchvision's resize and crop
            from torchvision.transforms import v2

            scale = int(self.pp.size / self.pp.crop_pct)
            item = v2.Resize(scale, interpolation=_interpolation(self.pp.interpolation),
                             antialias=True)(item)
            return v2.CenterCrop(self.pp.size)(item)
        return decode_resize(item, 0, self.pp).copy()  # writable, for ToImage


class ToRGB(torch.nn.Module):
    """hub's colour rule (and EXIF orientation) for PIL images; paths and bytes are opened."""

    def forward(self, item: Any) -> Any:
        from hub.preprocess import open_image

        return item if isinstance(item, torch.Tensor) else open_image(item)


def image_transforms(pp: ImagePreprocessing, *, train: bool) -> Any:
    """The pipeline for one image (PIL image, path, bytes or CHW uint8 tensor) -> normalised
    float32 CHW tensor."""
    from torchvision.transforms import v2

    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pp.mean), std=list(pp.std))]
    if not train:
        return v2.Compose([EvalResize(pp), *tail])
    return v2.Compose([ToRGB(), v2.RandomResizedCrop(pp.size, interpolation=_interpolation(pp.interpolation),
                                                      antialias=True),
                       v2.RandomHorizontalFlip(), *tail])
