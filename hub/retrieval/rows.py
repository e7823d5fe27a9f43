"""What a search result shows of a row besides its id: the image path or the text it came from.

A dataset output stores each row's ``id`` only: the path relative to the source folder (folder
and glob sources) or the row number (text, JSONL, CSV, Parquet sources). The path of a file row
is the source folder joined with the id. The value of a numbered row is read back from the source
file, when it is still there unchanged (same row count and content digest as the manifest
records); otherwise the result shows the id alone and says why.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hub.errors import InputError

__all__ = ["RowValues"]

_GLOB_MAGIC = set("*?[")


class RowValues:
    """Looks up the path or text of result rows in an index's source (opened once, lazily).

    :param manifest: the index's ``_manifest.json``.
    :param modality: what the rows are (``"image"``, ``"text"``), or None when unknown.
    """

    def __init__(self, manifest: dict[str, Any], modality: str | None) -> None:
        self.source: dict[str, Any] = manifest.get("source") or {}
        self.modality = modality
        self.note: str | None = None
        self._reader: Any = None
        self._opened = False

    def lookup(self, row_id: Any) -> dict[str, Any]:
        """``{"path": ...}`` or ``{"text": ...}`` for one row id; ``{}`` when unknown."""
        kind = self.source.get("kind")
        if kind == "folder":
            from hub.dataset.store import is_uri, join

            if is_uri(self.source["path"]):
                return {"path": join(self.source["path"], str(row_id))}
            return {"path": str(Path(self.source["path"]) / str(row_id))}
        if kind == "glob":
            parts = Path(self.source["path"]).parts
            fixed = list(itertools.takewhile(lambda s: not (_GLOB_MAGIC & set(s)), parts))
            return {"path": str(Path(*fixed, str(row_id)) if fixed else Path(str(row_id)))}
        reader = self._open()
        if reader is None or not isinstance(row_id, int) or not 0 <= row_id < len(reader):
            return {}
        value = reader.read(row_id, row_id + 1)[0].value
        if isinstance(value, str) and self.modality == "text":
            return {"text": value}
        if isinstance(value, Path):
            return {"path": str(value)}
        return {}

    def _open(self) -> Any:
        if self._opened:
            return self._reader
        self._opened = True
        from hub.dataset.readers import open_reader

        path, modality = self.source.get("path"), self.modality
        if not path or modality is None:
            return None
        if not Path(path).is_file():
            self.note = f"the source {path} is gone; showing row ids only"
            return None
        try:
            reader = open_reader(path, modality, column=self.source.get("column"))
        except InputError as exc:
            self.note = f"the source {path} cannot be read now ({exc}); showing row ids only"
            return None
        if (reader.digest, len(reader)) != (self.source.get("digest"), self.source.get("rows")):
            self.note = (f"the source {path} changed since the extraction; showing row ids only "
                         "(run the same `hub extract` again into a new folder to index it)")
            return None
        self._reader = reader
        return reader
