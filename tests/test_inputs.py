"""hub.inputs: what extract() accepts, and the typed errors that name the bad item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hub.errors import InputError, ModalityError
from hub.inputs import as_images, as_texts, is_array, is_pil, is_tensor


def test_type_checks_do_not_confuse_kinds() -> None:
    arr, ten, img = np.zeros((2, 2)), torch.zeros(2, 2), Image.new("RGB", (2, 2))
    assert is_array(arr) and not is_array(ten) and not is_array(img)
    assert is_tensor(ten) and not is_tensor(arr) and not is_tensor(img)
    assert is_pil(img) and not is_pil(arr) and not is_pil("x.png")


def test_single_items_and_lists_of_mixed_kinds(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (5, 7)).save(path)
    items = as_images([Image.new("L", (3, 3)), str(path), path, path.read_bytes(),
                       np.zeros((4, 6), np.uint8), np.zeros((4, 6, 3), np.float32),
                       torch.zeros(3, 8, 8), torch.zeros(9, 9)])
    assert len(items) == 8
    assert items[1] == path and items[2] == path  # paths are normalised, not decoded yet
    assert len(as_images(Image.new("RGB", (2, 2)))) == 1
    assert len(as_images(str(path))) == 1


def test_four_dimensional_inputs_are_batches() -> None:
    t = torch.rand(5, 3, 10, 10)
    items = as_images(t)
    assert len(items) == 5 and items[2].shape == (3, 10, 10)
    assert items[2].data_ptr() == t[2].data_ptr()  # views, not copies
    assert len(as_images(np.zeros((4, 10, 10, 3), np.uint8))) == 4


@pytest.mark.parametrize("empty", [[], ()])
def test_empty_input_is_refused(empty: list) -> None:
    with pytest.raises(InputError, match="empty list"):
        as_images(empty)
    with pytest.raises(InputError, match="empty list"):
        as_texts(empty)


def test_text_given_to_an_image_backbone_is_a_modality_error() -> None:
    with pytest.raises(ModalityError, match=r"Item 1 is text .*resnet50 is an image backbone"):
        as_images([np.zeros((4, 4, 3), np.uint8), "a photo of a cat"], name="resnet50")
    assert issubclass(ModalityError, TypeError) and issubclass(ModalityError, InputError)


def test_missing_files_and_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"Item 0: image file .*nope\.jpg.* does not exist"):
        as_images(["nope.jpg"])
    with pytest.raises(InputError, match="Item 1: .* is a folder"):
        as_images([np.zeros((2, 2), np.uint8), tmp_path])
    with pytest.raises(InputError, match="is a folder"):
        as_images(str(tmp_path))


@pytest.mark.parametrize(("x", "pattern"), [
    (np.zeros((8, 8, 2), np.uint8), r"Item 0 has 2 channels"),
    (np.zeros((8, 8, 5), np.float32), r"Item 0 has 5 channels"),
    (np.zeros((3, 32, 32), np.uint8), r"looks like CHW.*transpose\(1, 2, 0\)"),
    (torch.zeros(32, 32, 3), r"looks like HWC.*permute\(2, 0, 1\)"),
    (torch.zeros(2, 8, 8), r"Item 0 has 2 channels"),
    (np.zeros((8,), np.uint8), r"image arrays are HW, HWC"),
    (torch.zeros(1, 1, 3, 8, 8), r"image tensors are HW, CHW"),
    (np.zeros((0, 8, 3), np.uint8), r"empty shape"),
])
def test_wrong_shapes_and_channel_counts(x: object, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        as_images(x)


def test_wrong_channel_count_inside_a_list_names_its_position() -> None:
    with pytest.raises(InputError, match=r"^Item 2 has 2 channels"):
        as_images([np.zeros((8, 8, 3), np.uint8)] * 2 + [np.zeros((8, 8, 2), np.uint8)])


def test_other_objects_and_empty_bytes() -> None:
    with pytest.raises(InputError, match=r"Item 0 is a int"):
        as_images(3)
    with pytest.raises(InputError, match=r"Item 1 is empty bytes"):
        as_images([b"\x89PNG", b""])


def test_texts() -> None:
    assert as_texts("one") == ["one"]
    assert as_texts(["a", "é".encode(), bytearray(b"b")]) == ["a", "é", "b"]
    assert as_texts(("x", "")) == ["x", ""]


def test_non_utf8_bytes_name_the_item_and_the_byte() -> None:
    with pytest.raises(InputError, match=r"Item 1 is bytes that are not valid UTF-8 \(at byte 3\)"):
        as_texts(["fine", b"abc\xff\xfe"])


def test_images_given_to_a_text_backbone_are_modality_errors() -> None:
    with pytest.raises(ModalityError, match="minilm_l6 is a text backbone"):
        as_texts(Image.new("RGB", (2, 2)), name="minilm_l6")
    with pytest.raises(ModalityError, match=r"Item 1 is an image \(ndarray\)"):
        as_texts(["text", np.zeros((2, 2))])
    with pytest.raises(InputError, match=r"Item 0 is a int"):
        as_texts([1])
    with pytest.raises(InputError, match="not dict"):
        as_texts({"a": 1})


def test_a_batch_inside_a_list_contributes_its_items_in_order() -> None:
    t = torch.rand(3, 3, 10, 10)
    items = as_images([np.zeros((4, 4, 3), np.uint8), t, np.zeros((2, 5, 5, 3), np.uint8)])
    assert len(items) == 6 and items[1].data_ptr() == t[0].data_ptr()  # views, in order
    assert items[5].shape == (5, 5, 3)
    with pytest.raises(InputError, match=r"^Item 4 has 2 channels"):  # counted item by item
        as_images([t, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 2), np.uint8)])


def test_the_readme_example_mixes_files_images_arrays_and_a_batch(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    import hub

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save("cat.jpg")
    pil_image = Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    np_uint8_hwc = rng.integers(0, 256, (33, 44, 3), dtype=np.uint8)
    tensor_bchw = torch.rand(2, 3, 36, 36, generator=torch.Generator().manual_seed(0))
    bb = hub.load("example_tinynet", device="cpu", dtype="float32")
    f = bb.extract(["cat.jpg", pil_image, np_uint8_hwc, tensor_bchw], stages="all")  # README
    assert f.pooled.shape[0] == 5 and all(v.shape[0] == 5 for v in f.stages.values())
    alone = bb.extract(tensor_bchw, stages="all")
    assert torch.allclose(f.pooled[3:], alone.pooled, atol=1e-6)
    assert torch.allclose(f.pooled[:1], bb.extract("cat.jpg").pooled, atol=1e-6)


def test_a_lone_surrogate_is_an_input_error_naming_the_item() -> None:
    with pytest.raises(InputError, match=r"^Item 1 is not valid Unicode: character 2 is a lone "
                                         r"surrogate \('\\ud800'\)"):
        as_texts(["fine", "ab\ud800"])


def test_labels_must_be_non_empty_strings() -> None:
    from hub.inputs import check_labels
    from hub.twotower import DEFAULT_TEMPLATES

    assert check_labels(["cat", "dog"], None, DEFAULT_TEMPLATES) == (["cat", "dog"],
                                                                      list(DEFAULT_TEMPLATES))
    with pytest.raises(InputError, match=r"labels must be non-empty strings; label 0 is None"):
        check_labels([None, "x"], None, DEFAULT_TEMPLATES)
    with pytest.raises(InputError, match=r"label 1 is ' '"):
        check_labels(["x", " "], None, DEFAULT_TEMPLATES)
    with pytest.raises(InputError, match="labels repeat"):
        check_labels(["x", "x"], None, DEFAULT_TEMPLATES)


@pytest.mark.parametrize(("template", "found"), [
    ("a {x} {}", r"fields \['\{x\}', '\{\}'\]"),
    ("a {0}", r"fields \['\{0\}'\]"),
    ("a {} and {}", r"fields \['\{\}', '\{\}'\]"),
    ("a {!r}", r"fields \['\{!r\}'\]"),
    ("no placeholder", "no field"),
    ("a { oops", "a malformed format string"),
    (3, "not a string"),
])
def test_templates_need_exactly_one_plain_field(template: object, found: str) -> None:
    from hub.inputs import check_labels

    with pytest.raises(InputError, match=rf"^template 1 \(.*\) has {found}; each template needs "
                                         "exactly one"):
        check_labels(["cat"], ["a photo of a {}.", template], ())
    assert check_labels(["cat"], ["{{brace}} {}"], ())[1] == ["{{brace}} {}"]
