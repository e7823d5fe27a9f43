"""hub.probe.data: the two labelled layouts, and the datasets a probe refuses, with what to do."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hub.errors import DatasetError, InputError
from hub.probe.data import check_classes, open_labelled


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root: Path, layout: dict[str, int]) -> Path:
    for cls, n in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"{i}.png").write_bytes(_png(i))
    return root


def test_image_folder_labels_come_from_the_class_subfolders(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", {"cat": 2, "dog": 3})
    (root / "dog" / "deeper").mkdir()
    (root / "dog" / "deeper" / "x.jpg").write_bytes(_png(9))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    src = open_labelled(root, "image")
    ids = [r.id for r in src.reader.read(0, len(src.reader))]
    assert ids == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png", "dog/2.png", "dog/deeper/x.jpg"]
    assert src.labels == ["cat", "cat", "dog", "dog", "dog", "dog"]
    assert src.counts() == {"cat": 2, "dog": 4} and src.counts([0, 5]) == {"cat": 1, "dog": 1}
    assert src.layout == "folder" and src.path == str(root.resolve())


def test_image_folder_refuses_an_empty_class_loose_images_and_no_classes(tmp_path: Path) -> None:
    root = _folder(tmp_path / "a", {"cat": 2, "dog": 2})
    (root / "bird").mkdir()
    (root / "bird" / "readme.txt").write_text("no pictures yet")
    with pytest.raises(DatasetError, match=r"'bird' .* has no image files") as info:
        open_labelled(root, "image")
    assert info.value.classes == {"bird": 0}

    root = _folder(tmp_path / "b", {"cat": 2})
    (root / "stray.png").write_bytes(_png(1))
    with pytest.raises(InputError, match=r"directly in it \(stray.png.*DATA/<class>/<image>"):
        open_labelled(root, "image")

    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetError, match="no class subfolders"):
        open_labelled(tmp_path / "c", "image")


def test_image_folder_for_a_text_backbone_and_column_on_a_folder_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"a": 1, "b": 1})
    with pytest.raises(InputError, match="text backbone: give a JSONL, CSV or Parquet"):
        open_labelled(root, "text")
    with pytest.raises(InputError, match=r"--column .* applies to a JSONL"):
        open_labelled(root, "image", column="path")


def test_csv_text_and_label_columns(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("text,label,extra\nhello,greet,1\n\"bye, now\",leave,2\nnothing,,3\nshort row\n")
    src = open_labelled(f, "text")
    assert src.reader.column == "text" and src.layout == "csv"
    assert [r.value for r in src.reader.read(0, 4)] == ["hello", "bye, now", "nothing", "short row"]
    assert src.labels == ["greet", "leave", None, None]  # an empty cell and a short row: no label
    src = open_labelled(f, "text", column="extra", label="text")
    assert src.labels == ["hello", "bye, now", "nothing", "short row"]


def test_jsonl_labels_of_any_scalar_type_and_missing_ones(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": 1.5}, {"text": "c", "label": True},
            {"text": "d"}, {"text": "e", "label": None}, {"text": "f", "label": [1]}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    src = open_labelled(f, "text")
    assert src.labels == ["0", "1.5", "True", None, None, None, None]
    assert len(src.reader) == 7


def test_parquet_images_by_path_with_labels(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = _folder(tmp_path / "imgs", {"x": 2})
    table = pa.table({"image": ["imgs/x/0.png", "imgs/x/1.png"], "cls": [3, 4]})
    pq.write_table(table, tmp_path / "t.parquet")
    src = open_labelled(tmp_path / "t.parquet", "image", label="cls")
    assert src.labels == ["3", "4"] and src.layout == "parquet"
    assert src.reader.read(0, 1)[0].value == root / "x" / "0.png"


def test_a_missing_label_column_names_the_columns_there_are(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("text,category\nhello,a\n")
    with pytest.raises(InputError, match="no column 'label'; its columns are text, category"):
        open_labelled(f, "text")
    g = tmp_path / "t.jsonl"
    g.write_text('{"text": "a", "category": "x"}\n')
    with pytest.raises(InputError, match="no column 'label'; its columns are text, category"):
        open_labelled(g, "text")
    with pytest.raises(InputError, match="item column and the label column are both 'text'"):
        open_labelled(f, "text", label="text")


def test_sources_that_are_not_labelled_layouts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_labelled(tmp_path / "nope", "image")
    (tmp_path / "list.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="neither a folder nor a JSONL, CSV or Parquet file"):
        open_labelled(tmp_path / "list.txt", "text")


def test_check_classes_refuses_one_class_and_classes_smaller_than_the_folds() -> None:
    with pytest.raises(DatasetError, match=r"1 class with usable rows .*'cat' \(9\).* at least two"):
        check_classes({"cat": 9}, 5, path="d")
    with pytest.raises(DatasetError, match="0 classes"):
        check_classes({}, 5, path="d")
    with pytest.raises(DatasetError, match=r"'dog' has 3 usable rows, fewer than the 5 folds \(2 rows "
                                           r"were skipped.*lower --folds") as info:
        check_classes({"cat": 9, "dog": 3}, 5, path="d", skipped=2)
    assert info.value.classes == {"cat": 9, "dog": 3}
    check_classes({"cat": 5, "dog": 5}, 5, path="d")
