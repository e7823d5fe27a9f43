"""A labelled dataset for ``hub probe``: the rows of a source and the class of each row.

Two layouts are read:

* a folder with one subfolder per class (the ImageFolder layout): every image under
  ``DATA/<class>/`` (recursively; hidden files skipped) is a row of that class;
* a JSONL, CSV or Parquet file: ``column`` holds the item (a text, an image path relative
  to the file, or image bytes) and ``label`` its class;
* WebDataset tar shards (``shards/{00000..00009}.tar``, :mod:`hub.dataset.tars`): ``label``
  names a field (``cls``, ``txt``) or a key of each sample's ``json`` member.

Tables and tar shards may be store URIs (``s3://bucket/labelled.csv``; :mod:`hub.dataset.store`).

The items are read by :mod:`hub.dataset.readers`, the readers of ``hub extract``: a row
means the same item there and here. A row whose label is missing is kept in the reader
(the feature cache is about items, not labels) and left out of the probe as skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.dataset.readers import Reader, open_reader
from hub.errors import DatasetError, InputError
from hub.inputs import image_files

__all__ = ["TABLE_SUFFIXES", "Labelled", "check_classes", "open_labelled"]

#: Files read as tables with a label column.
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq")


@dataclass(frozen=True)
class Labelled:
    """The rows of a labelled source.

    :param reader: the rows' items.
    :param labels: the class of each row, ``None`` where the row has no usable label.
    :param path: the source, absolute.
    :param layout: ``"folder"`` (one subfolder per class) or the table's kind (``"csv"``...).
    """

    reader: Reader
    labels: list[str | None]
    path: str
    layout: str

    def counts(self, rows: list[int] | None = None) -> dict[str, int]:
        """Rows per class (sorted by class), over ``rows`` (default: every labelled row)."""
        labels = self.labels if rows is None else [self.labels[i] for i in rows]
        counts: dict[str, int] = {}
        for lab in labels:
            if lab is not None:
                counts[lab] = counts.get(lab, 0) + 1
        return dict(sorted(counts.items()))


def open_labelled(data: str | os.PathLike[str], modality: str, *, column: str | None = None,
                  label: str = "label") -> Labelled:
    """Open ``data`` (a folder of class subfolders, or a JSONL/CSV/Parquet file) for ``modality``.

    :param column: the item column of a table (guessed when obvious: ``text``, ``image``,
        ``path``...).
    :param label: the label column of a table.
    :raises InputError: a missing source, a missing column, a layout that is not one of the two.
    :raises DatasetError: a class subfolder without images.
    """
    from hub.dataset.store import is_uri
    from hub.dataset.tars import is_webdataset

    path = Path(data)
    text = os.fspath(data)
    if is_webdataset(text) or (is_uri(text) and text.lower().endswith(TABLE_SUFFIXES)):
        reader = open_reader(text, modality, column=column)
        labels = [_label(v) for v in reader.column_values(label)]
        return Labelled(reader, labels, reader.path, reader.kind)
    if path.is_dir():
        if column is not None:
            raise InputError(f"--column (column=) applies to a JSONL, CSV or Parquet file, not to "
                             f"the folder {str(path)!r}, whose subfolders are the classes.")
        return _image_folder(path, modality)
    if not path.is_file():
        raise InputError(f"{str(path)!r} does not exist. Pass a folder with one subfolder per class, "
                         "or a JSONL, CSV or Parquet file with a label column.")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{str(path)!r} is neither a folder nor a JSONL, CSV or Parquet file "
                         f"({', '.join(TABLE_SUFFIXES)}): a probe needs a label for every item.")
    reader = open_reader(path, modality, column=column)
    if reader.column == label:
        raise InputError(f"{str(path)!r}: the item column and the label column are both {label!r}. "
                         "Name the item column with --column and the class with --label.")
    labels = [_label(v) for v in reader.column_values(label)]
    return Labelled(reader, labels, reader.path, reader.kind)


def _label(value: Any) -> str | None:
    """A class name from a raw label value; ``None`` for a missing, empty or non-scalar one."""
    if value is None or isinstance(value, (list, dict, bytes, bytearray)):
        return None
    text = str(value).strip()
    return text or None


def _image_folder(root: Path, modality: str) -> Labelled:
    if modality != "image":
        raise InputError(f"{str(root)!r} is a folder of images, but the backbone is a {modality} "
                         "backbone: give a JSONL, CSV or Parquet file with --column and --label.")
    loose = [f.name for f in image_files(root) if f.parent == root]
    if loose:
        raise InputError(f"{str(root)!r} has images directly in it ({loose[0]}...): the ImageFolder "
                         "layout keeps each class in its own subfolder, DATA/<class>/<image>. Move "
                         "them into class subfolders.")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    empty = [d.name for d in classes if not image_files(d)]
    if empty:
        raise DatasetError(f"class folder{'s' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
                           f"of {str(root)!r} {'have' if len(empty) > 1 else 'has'} no image files. Add "
                           "images or remove the folder.", classes={c: 0 for c in empty})
    if not classes:
        raise DatasetError(f"{str(root)!r} has no class subfolders: the ImageFolder layout is "
                           "DATA/<class>/<image>, one subfolder per class.")
    reader = open_reader(root, "image")
    labels: list[str | None] = [str(rec.id).split("/", 1)[0] for rec in reader.read(0, len(reader))]
    return Labelled(reader, labels, reader.path, "folder")


def check_classes(counts: dict[str, int], folds: int, *, path: str, skipped: int = 0) -> None:
    """Refuse a dataset that cross-validation cannot split honestly.

    :param counts: usable rows per class.
    :param skipped: rows left out (named in the messages: they may be why a class is short).
    :raises DatasetError: fewer than two classes, or a class with fewer rows than ``folds``
        (stratified folds put at least one row of each class in every test fold).
    """
    note = f" ({skipped} rows were skipped as unreadable or unlabelled)" if skipped else ""
    if len(counts) < 2:
        found = ", ".join(f"{c!r} ({n})" for c, n in counts.items()) or "none"
        raise DatasetError(f"{path!r} has {len(counts)} class{'es' if len(counts) != 1 else ''} with "
                           f"usable rows ({found}){note}; a probe tells classes apart, so it needs at "
                           "least two.", classes=counts)
    short = {c: n for c, n in counts.items() if n < folds}
    if short:
        names = ", ".join(f"{c!r} has {n}" for c, n in short.items())
        raise DatasetError(f"{path!r}: {names} usable row{'s' if sum(short.values()) != 1 else ''}, "
                           f"fewer than the {folds} folds{note}; every test fold needs a row of "
                           "each class. Add rows or lower --folds (folds=).", classes=counts)
