"""Dataset readers: every kind, its ids, ranges, bad rows and the errors that say what to do."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest

from hub.dataset.readers import Failure, open_reader
from hub.errors import InputError


def _png(color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (5, 7), color).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    for rel in ["z.jpg", "a.PNG", "b/c/x.jpeg", "b/y.webp", ".hidden.jpg", ".cache/k.jpg",
                "notes.txt"]:
        (tmp_path / rel).write_bytes(b"x")
    src = open_reader(tmp_path, "image")
    assert src.kind == "folder" and src.id_type == "string"
    assert [r.id for r in src.read(0, len(src))] == ["a.PNG", "b/c/x.jpeg", "b/y.webp", "z.jpg"]
    rec = src.read(1, 2)[0]
    assert rec.index == 1 and rec.value == tmp_path / "b/c/x.jpeg"
    assert src.read(3, 99)[0].id == "z.jpg"


def test_folder_digest_changes_when_files_change(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    before = open_reader(tmp_path, "image").describe()
    (tmp_path / "b.jpg").write_bytes(b"x")
    after = open_reader(tmp_path, "image").describe()
    assert before["rows"] == 1 and after["rows"] == 2 and before["digest"] != after["digest"]


def test_glob_ids_are_relative_to_the_fixed_prefix(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for rel in ["imgs/a.jpg", "imgs/sub/b.jpg", "imgs/sub/c.png"]:
        (tmp_path / rel).write_bytes(b"x")
    src = open_reader(str(tmp_path / "imgs" / "**" / "*.jpg"), "image")
    assert src.kind == "glob"
    assert [r.id for r in src.read(0, len(src))] == ["a.jpg", "sub/b.jpg"]
    with pytest.raises(InputError, match="matches no files"):
        open_reader(str(tmp_path / "imgs" / "*.gif"), "image")


def test_text_lines_handle_crlf_bom_missing_final_newline_and_bad_utf8(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xef\xbb\xbffirst\r\nsecond\n\n\xff\xfe broken\nlast")
    src = open_reader(f, "text")
    assert src.kind == "text" and len(src) == 5 and src.id_type == "int64"
    recs = src.read(0, 5)
    assert [r.id for r in recs] == [0, 1, 2, 3, 4]
    assert [r.value for r in recs[:3]] == ["first", "second", ""]
    assert isinstance(recs[3].value, Failure) and "UTF-8" in recs[3].value.reason
    assert recs[4].value == "last"
    assert [r.value for r in src.read(4, 5)] == ["last"]


def test_text_file_of_image_paths_for_an_image_backbone(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("a.jpg\n/abs/b.jpg\n  \n")
    recs = open_reader(tmp_path / "list.txt", "image").read(0, 3)
    assert recs[0].value == tmp_path / "a.jpg" and recs[1].value == Path("/abs/b.jpg")
    assert isinstance(recs[2].value, Failure)


def test_text_source_is_picklable_and_reads_the_same_in_a_copy(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("".join(f"line {i}\n" for i in range(1000)))
    src = pickle.loads(pickle.dumps(open_reader(f, "text")))
    assert [r.value for r in src.read(997, 1000)] == ["line 997", "line 998", "line 999"]


def test_jsonl_rows_with_bad_json_missing_field_and_null(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a", "n": 1}\n{not json}\n{"other": 1}\n{"text": null}\n{"text": "e"}\n')
    src = open_reader(f, "text", column="text")
    values = [r.value for r in src.read(0, len(src))]
    assert values[0] == "a" and values[4] == "e"
    assert "not valid JSON" in values[1].reason
    assert "no field 'text'" in values[2].reason
    assert "null" in values[3].reason
    # the column is guessed when obvious, and a wrong one names the fields
    assert open_reader(f, "text").column == "text"
    with pytest.raises(InputError, match="no column 'caption'.*text, n"):
        open_reader(f, "text", column="caption")


def test_csv_with_quoted_newlines_and_tsv(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text('id,text\n1,"two\nlines"\n2,plain\n3\n')
    src = open_reader(f, "text", column="text")
    assert len(src) == 3
    values = [r.value for r in src.read(0, 3)]
    assert values[:2] == ["two\nlines", "plain"] and isinstance(values[2], Failure)
    t = tmp_path / "d.tsv"
    t.write_text("path\tlabel\ncats/1.jpg\tcat\n")
    rec = open_reader(t, "image").read(0, 1)[0]
    assert rec.value == tmp_path / "cats/1.jpg"


def test_column_must_be_named_when_ambiguous(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="--column"):
        open_reader(f, "text")


def test_parquet_bytes_struct_and_paths_across_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    png = _png()
    table = pa.table({
        "img": [png, None, png, b"", png],
        "hf": [{"bytes": png, "path": None}, {"bytes": None, "path": "x.jpg"},
               {"bytes": None, "path": None}, {"bytes": png, "path": "y"}, None],
        "text": ["a", "b", None, "d", "e"],
    })
    f = tmp_path / "d.parquet"
    pq.write_table(table, f, row_group_size=2)
    src = open_reader(f, "image", column="img")
    assert src.group_rows == [2, 2, 1] and len(src) == 5
    values = [r.value for r in src.read(1, 5)]
    assert isinstance(values[0], Failure) and values[1] == png and values[3] == png
    assert [r.index for r in src.read(1, 4)] == [1, 2, 3]
    hf = [r.value for r in open_reader(f, "image", column="hf").read(0, 4)]
    assert hf[0] == png and hf[1] == tmp_path / "x.jpg" and isinstance(hf[2], Failure)
    text = pickle.loads(pickle.dumps(open_reader(f, "text", column="text")))
    assert [r.value for r in text.read(3, 5)] == ["d", "e"]


def test_missing_source_and_misplaced_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_reader(tmp_path / "nope", "image")
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="applies to JSONL, CSV and Parquet"):
        open_reader(tmp_path, "image", column="x")
    with pytest.raises(InputError, match="text backbone"):
        open_reader(tmp_path, "text")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError, match="empty"):
        open_reader(tmp_path / "empty.txt", "text")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(InputError, match="not a readable Parquet"):
        open_reader(tmp_path / "broken.parquet", "image")


def test_describe_names_kind_path_column_rows_digest(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "a"}) + "\n")
    d = open_reader(f, "text").describe()
    assert d["kind"] == "jsonl" and d["column"] == "text" and d["rows"] == 1
    assert d["path"] == str(f.resolve()) and len(d["digest"]) == 64


def test_importing_hub_dataset_loads_no_torch_pyarrow_or_ray() -> None:
    import subprocess
    import sys

    code = ("import sys, hub, hub.dataset; "
            "print(sorted(m for m in ('torch', 'pyarrow', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert out.strip() == "[]"


def test_column_values_reads_another_column_row_aligned(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "t.csv").write_text("text,label\na,x\nb\nc,z\n")
    assert open_reader(tmp_path / "t.csv", "text").column_values("label") == ["x", None, "z"]
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": 1}\nbad\n{"text": "c"}\n')
    assert open_reader(tmp_path / "t.jsonl", "text").column_values("label") == [1, None, None]
    pq.write_table(pa.table({"text": ["a", "b"], "label": [3, None]}), tmp_path / "t.parquet")
    assert open_reader(tmp_path / "t.parquet", "text").column_values("label") == [3, None]
    for name in ("t.csv", "t.jsonl", "t.parquet"):
        with pytest.raises(InputError, match="has no column 'kind'; its columns are text, label"):
            open_reader(tmp_path / name, "text").column_values("kind")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="A folder source has no columns"):
        open_reader(tmp_path / "imgs", "image").column_values("label")
