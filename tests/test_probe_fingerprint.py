"""hub.probe.fingerprint: the content of the items decides, not where they lie or when."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hub.dataset.readers import open_reader
from hub.probe.data import open_labelled
from hub.probe.fingerprint import dataset_fingerprint, items_digest


def _folder(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(f"{cls}{i}".encode() * 100)
    return root


def test_a_copy_elsewhere_has_the_same_digest_and_an_edit_in_place_changes_it(tmp_path: Path) -> None:
    root = _folder(tmp_path / "one")
    before = items_digest(open_reader(root, "image"))
    copy = tmp_path / "elsewhere" / "two"
    shutil.copytree(root, copy)  # new paths, new modification times
    assert items_digest(open_reader(copy, "image")) == before

    target = copy / "b" / "1.png"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[10] ^= 1  # one bit, same size, modification time restored
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert items_digest(open_reader(copy, "image")) != before


def test_a_csv_listing_the_same_files_in_order_shares_the_folders_digest(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    rows = [f"imgs/{c}/{i}.png,{c}" for c in ("a", "b") for i in range(3)]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert items_digest(open_reader(tmp_path / "list.csv", "image", column="path")) == \
        items_digest(open_reader(root, "image"))
    (tmp_path / "rev.csv").write_text("path,label\n" + "\n".join(reversed(rows)) + "\n")
    assert items_digest(open_reader(tmp_path / "rev.csv", "image", column="path")) != \
        items_digest(open_reader(root, "image"))  # row order is part of what the features mean


def test_unreadable_rows_and_texts_are_part_of_the_digest(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"text": "a", "label": 1}\nbroken\n')
    g = tmp_path / "u.jsonl"
    g.write_text('{"text": "a", "label": 2}\n{"text": "b"}\n')
    a, b = items_digest(open_reader(f, "text")), items_digest(open_reader(g, "text"))
    assert a != b and len(a) == 64
    assert items_digest(open_reader(f, "image", column="text")) != a  # modality is part of it


def test_labels_change_the_dataset_fingerprint_but_not_the_items(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    src = open_labelled(root, "image")
    items = items_digest(src.reader)
    fp = dataset_fingerprint(items, src.labels)
    assert len(fp) == 16 and fp == dataset_fingerprint(items, list(src.labels))
    assert dataset_fingerprint(items, list(reversed(src.labels))) != fp
