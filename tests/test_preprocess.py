"""hub.preprocess: the colour rule for every PIL mode, EXIF orientation, pixel checks, and parity
of the eval transform with timm's own."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hub.errors import ConfigError, InputError
from hub.manifest import ImagePreprocessing
from hub.preprocess import open_image, pixel_batch, to_rgb

CPU = torch.device("cpu")
PP = ImagePreprocessing(size=32, crop_pct=1.0, interpolation="bilinear", mean=(0.0, 0.0, 0.0),
                        std=(1.0, 1.0, 1.0))


def rgb_at(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == img.size
    return tuple(out.getpixel(xy))


def test_opaque_modes_go_through_pil() -> None:
    assert rgb_at(Image.new("L", (2, 2), 77)) == (77, 77, 77)
    assert rgb_at(Image.new("1", (2, 2), 1)) == (255, 255, 255)
    assert rgb_at(Image.new("RGBX", (2, 2), (1, 2, 3, 0))) == (1, 2, 3)
    assert rgb_at(Image.new("CMYK", (2, 2), (0, 255, 255, 0))) == (255, 0, 0)
    ycc = Image.new("RGB", (2, 2), (10, 200, 30)).convert("YCbCr")
    assert max(abs(a - b) for a, b in zip(rgb_at(ycc), (10, 200, 30))) <= 2
    rgb = Image.new("RGB", (2, 2), (9, 8, 7))
    assert to_rgb(rgb) is rgb


def test_transparency_is_composited_on_white() -> None:
    assert rgb_at(Image.new("RGBA", (2, 2), (0, 0, 0, 0))) == (255, 255, 255)
    assert rgb_at(Image.new("RGBA", (2, 2), (200, 0, 0, 255))) == (200, 0, 0)
    half = rgb_at(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    assert all(abs(c - 127) <= 1 for c in half)
    assert rgb_at(Image.new("LA", (2, 2), (0, 0))) == (255, 255, 255)
    assert rgb_at(Image.new("LA", (2, 2), (50, 255))) == (50, 50, 50)


def test_palette_with_and_without_a_transparent_colour() -> None:
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    assert rgb_at(p, (0, 0)) == (0, 0, 255) and rgb_at(p, (1, 0)) == (255, 0, 0)
    p.info["transparency"] = 0  # colour 0 is transparent: white
    assert rgb_at(p, (0, 0)) == (255, 255, 255) and rgb_at(p, (1, 0)) == (255, 0, 0)


def test_high_bit_depth_greyscale_rule() -> None:
    i16 = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert i16.mode == "I;16"
    assert [rgb_at(i16, (x, 0))[0] for x in range(3)] == [0, 128, 255]
    as_i = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert [rgb_at(as_i, (x, 0))[0] for x in range(3)] == [0, 128, 255]  # fits 16 bits
    eight = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert [rgb_at(eight, (x, 0))[0] for x in range(3)] == [0, 100, 255]  # fits 8 bits
    huge = Image.fromarray(np.array([[0, 100000, 200000]], dtype=np.int32))
    assert [rgb_at(huge, (x, 0))[0] for x in range(3)] == [0, 128, 255]  # scaled by its max
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0, -3.0]], dtype=np.float32))
    assert [rgb_at(unit, (x, 0))[0] for x in range(4)] == [0, 128, 255, 0]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    assert Image.open(path).size == (40, 20)
    for item in (path, path.read_bytes(), Image.open(path)):
        shown = open_image(item)
        assert shown.size == (20, 40)
        top, bottom = shown.getpixel((10, 5)), shown.getpixel((10, 35))
        assert top[0] > 200 and top[2] < 60  # the left (red) edge is now on top
        assert bottom[2] > 200 and bottom[0] < 60


def test_decompression_bombs_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (30, 30)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 900 px: over twice the limit
    with pytest.raises(InputError, match=r"Item 4: refused as a possible decompression bomb"):
        open_image(buf.getvalue(), 4)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 900 px: over the limit, under twice
    with pytest.raises(InputError, match="decompression bomb"):
        open_image(buf.getvalue(), 0)


def test_undecodable_bytes_name_the_item() -> None:
    with pytest.raises(InputError, match=r"Item 7: cannot decode image"):
        pixel_batch([b"not an image at all"], PP, device=CPU, indices=[7])


def test_nan_and_out_of_range_pixels_name_the_item() -> None:
    good = np.full((8, 8, 3), 0.5, np.float32)
    bad = good.copy()
    bad[3, 3, 1] = np.nan
    with pytest.raises(InputError, match=r"^Item 12 contains NaN"):
        pixel_batch([good, bad], PP, device=CPU, indices=[11, 12])
    inf = torch.full((2, 3, 32, 32), 0.5)
    inf[1, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match=r"^Item 1 contains NaN or infinite"):
        pixel_batch(list(inf), PP, device=CPU)  # the at-size fast path checks too
    with pytest.raises(InputError, match=r"Item 0 is a float image with values in \[0, 2\]"):
        pixel_batch([torch.linspace(0, 2, 3 * 32 * 32).view(3, 32, 32)], PP, device=CPU)
    with pytest.raises(InputError, match="dtype torch.int32"):
        pixel_batch([torch.zeros(3, 8, 8, dtype=torch.int32)], PP, device=CPU)


def test_uint8_float_array_and_tensor_forms_agree() -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    as_float = u8.astype(np.float64) / 255.0
    chw = torch.from_numpy(u8).permute(2, 0, 1)
    x = pixel_batch([u8, as_float, chw, chw.float() / 255], PP, device=CPU)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    for k in range(1, 4):
        assert torch.allclose(x[0], x[k], atol=1e-6)


def test_grey_and_rgba_arrays() -> None:
    grey = np.full((32, 32), 51, np.uint8)
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent black: white
    x = pixel_batch([grey, rgba, torch.full((1, 32, 32), 0.2)], PP, device=CPU)
    assert torch.allclose(x[0], torch.full((3, 32, 32), 0.2))
    assert torch.allclose(x[1], torch.ones(3, 32, 32))
    assert torch.allclose(x[2], torch.full((3, 32, 32), 0.2))


def test_at_size_batches_are_not_resized_and_not_modified() -> None:
    pp = ImagePreprocessing(size=32, crop_pct=0.875, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    t = torch.rand(3, 3, 32, 32)
    before = t.clone()
    x = pixel_batch(list(t), pp, device=CPU)
    assert torch.equal(t, before)  # the caller's tensor is untouched
    assert torch.allclose(x, (t - 0.5) / 0.5)


def test_mixed_sizes_dtype_and_channels_last() -> None:
    items = [Image.new("RGB", (64, 48)), np.zeros((10, 90, 3), np.uint8), torch.rand(3, 200, 20)]
    x = pixel_batch(items, PP, device=CPU, dtype=torch.bfloat16, channels_last=True)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("size", "crop_pct", "interpolation", "wh"), [
    (224, 0.95, "bicubic", (300, 200)),
    (224, 0.875, "bilinear", (180, 260)),
    (64, 1.0, "bicubic", (97, 64)),
])
def test_pil_path_equals_timms_eval_transform(size: int, crop_pct: float, interpolation: str,
                                              wh: tuple[int, int]) -> None:
    from timm.data import create_transform

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    ref = create_transform(input_size=(3, size, size), crop_pct=crop_pct,
                           interpolation=interpolation, mean=mean, std=std)(img)
    pp = ImagePreprocessing(size=size, crop_pct=crop_pct, interpolation=interpolation,  # type: ignore[arg-type]
                            mean=mean, std=std)
    got = pixel_batch([img], pp, device=CPU)[0]
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-5


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (5, 6, 7)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_thin_strip_is_refused_before_the_resize_naming_item_and_setting() -> None:
    # 20000 x 1, shorter side to 32 (PP): 640,000 x 32 = 20.5M pixels is under the default;
    # a 224 input (the usual) makes it 4,480,000 x 224 = 1.0G pixels: refused before resizing
    pp = PP.model_copy(update={"size": 224})
    strip = _png(20000, 1)
    with pytest.raises(InputError) as info:
        pixel_batch([_png(8, 8), strip], pp, device=CPU, indices=[0, 7])
    msg = str(info.value)
    assert msg.startswith("Item 7 (20,000 x 1, resized for the 224-pixel input) would become "
                          "4,480,000 x 224") and "HUB_MAX_IMAGE_PIXELS" in msg
    arr = np.zeros((1, 20000, 3), dtype=np.uint8)  # the same strip as an array, and a tensor
    with pytest.raises(InputError, match=r"Item 0 \(20,000 x 1, resized"):
        pixel_batch([arr], pp, device=CPU)
    with pytest.raises(InputError, match=r"Item 0 \(20,000 x 1, resized"):
        pixel_batch([torch.zeros(3, 1, 20000)], pp, device=CPU)


def test_pixels_are_capped_from_the_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(InputError, match=r"Item 3 has 40 x 30 = 1,200 pixels, over the limit of "
                                         r"1,000 \(HUB_MAX_IMAGE_PIXELS\)"):
        open_image(_png(40, 30), 3)
    assert open_image(_png(40, 25), 3).size == (40, 25)
    monkeypatch.setenv("HUB_MAX_IMAGE_PIXELS", "-5")
    with pytest.raises(ConfigError, match="HUB_MAX_IMAGE_PIXELS"):
        open_image(_png(4, 4), 0)
