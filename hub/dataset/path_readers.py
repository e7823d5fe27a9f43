"""Readers of image files listed once: a folder or a glob, local or in a store
(``s3://bucket/photos/``, ``s3://bucket/photos/**/*.jpg``). Ids are paths relative to the
folder (or to the glob's fixed prefix); the sorted list is the row order.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import itertools
import os
from pathlib import Path

from hub.dataset import store
from hub.dataset.rows import GLOB_MAGIC, Reader, Record, fetch
from hub.errors import InputError
from hub.inputs import IMAGE_SUFFIXES, image_files

__all__ = ["FolderReader", "GlobReader", "StoreFolderReader", "StoreGlobReader"]


class _PathList(Reader):
    """Image files listed once, sorted by id."""

    id_type = "string"

    def __init__(self, path: str, modality: str, root: Path, files: list[Path]) -> None:
        super().__init__(path, modality)
        if modality != "image":
            raise InputError(f"{path!r} lists image files, but the backbone is a {modality} "
                             "backbone. Pass a text, JSONL, CSV or Parquet file for text.")
        pairs = sorted((f.relative_to(root).as_posix(), f) for f in files)
        self.ids = [p[0] for p in pairs]
        self.files = [str(p[1]) for p in pairs]
        if not self.ids:
            raise InputError(f"{path!r} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        self.digest = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.files)

    def read(self, start: int, stop: int) -> list[Record]:
        return [Record(i, self.ids[i], fetch(f) if store.is_uri(f) else Path(f))
                for i, f in ((i, self.files[i]) for i in range(start, min(stop, len(self))))]


class _StorePathList(_PathList):
    """Image objects under a store prefix, listed once; ids are keys relative to ``root``."""

    def __init__(self, path: str, modality: str, keys: list[str], root: str) -> None:
        protocol = path.partition("://")[0]
        files = [Path(k) for k in keys if Path(k).suffix.lower() in IMAGE_SUFFIXES
                 and not any(part.startswith(".") for part in Path(k).relative_to(root).parts)]
        super().__init__(path, modality, Path(root), files)
        self.files = [f"{protocol}://{f}" for f in self.files]


class FolderReader(_PathList):
    """Every image file under a folder, recursively; hidden files and folders are skipped."""

    kind = "folder"

    def __init__(self, path: str, modality: str) -> None:
        root = Path(path)
        super().__init__(str(root.resolve()), modality, root, image_files(root))


class StoreFolderReader(_StorePathList):
    """Every image object under a store prefix (``s3://bucket/photos/``), recursively."""

    kind = "folder"

    def __init__(self, uri: str, modality: str) -> None:
        fs, inner = store.filesystem(uri)
        root = inner.rstrip("/")
        keys = store.retried(uri, lambda: fs.find(root))
        super().__init__(uri.rstrip("/"), modality, [str(k) for k in keys], root)


class StoreGlobReader(_StorePathList):
    """The objects a glob over a store matches (``s3://bucket/photos/**/*.jpg``)."""

    kind = "glob"

    def __init__(self, pattern: str, modality: str) -> None:
        fs, inner = store.filesystem(pattern)
        fixed = list(itertools.takewhile(lambda s: not (GLOB_MAGIC & set(s)), inner.split("/")))
        keys = [str(k) for k in store.retried(pattern, lambda: fs.glob(inner))]
        if not keys:
            raise InputError(f"The pattern {pattern!r} matches no objects.")
        super().__init__(pattern, modality, keys, "/".join(fixed))


class GlobReader(_PathList):
    """The files a glob pattern matches (``**`` recurses); ids are relative to its fixed prefix."""

    kind = "glob"

    def __init__(self, pattern: str, modality: str) -> None:
        fixed = list(itertools.takewhile(lambda s: not (GLOB_MAGIC & set(s)), Path(pattern).parts))
        root = Path(*fixed) if fixed else Path(".")
        files = [Path(f) for f in globlib.glob(pattern, recursive=True) if os.path.isfile(f)]
        if not files:
            raise InputError(f"The pattern {pattern!r} matches no files.")
        super().__init__(pattern, modality, root, files)
