"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of either.

:func:`write_atomic` writes a file: a temporary file with a unique name
(:func:`tempfile.mkstemp`) in the target's own folder, so two writers never share it and the
rename never crosses a filesystem; the content (bytes, text, or a callback that writes the
temporary path); ``flush`` + ``fsync``; one :func:`os.replace` onto the target; an ``fsync``
of the folder so the rename survives a power cut. On any failure the temporary file is
removed and an existing target is left as it was.

:func:`replace_dir` moves a finished staged folder into place: an existing target is renamed
aside first and restored if the move fails, then deleted once the new one is in place.

A write that cannot happen (a read-only folder, a parent that is a file, a full disk) raises
:class:`~hub.errors.OutputError`, which names the path and inherits :class:`OSError`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hub.errors import OutputError

__all__ = ["check_writable", "fsync_dir", "replace_dir", "write_atomic"]

#: What :func:`write_atomic` writes: bytes, text, or a function that writes the temporary path.
Content = bytes | str | Callable[[Path], None]


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename into it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows opens no folders; a folder we cannot open is not ours to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename itself has happened
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, when a file cannot be written at ``path``: its folder is
    created if missing and a temporary file is made and removed there.

    :raises OutputError: naming ``path``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError.from_os(target, exc) from exc
    return target


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_atomic(path: str | os.PathLike[str], content: Content, *, encoding: str = "utf-8",
                 mode: int | None = None, make_parent: bool = True) -> Path:
    """Write ``content`` to ``path`` atomically (see the module docstring); returns the path.

    :param content: bytes, text (written with ``encoding``, newlines untranslated), or a
        callable given the temporary file's path (e.g. ``lambda p: np.save(p.open("wb"), a)``);
        the temporary name keeps the target's suffix, for writers that look at it.
    :param mode: the new file's permission bits (default: ``0o666`` less the umask, as
        :func:`open` would give; a replaced file keeps its own).
    :param make_parent: create missing parent folders.
    :raises OutputError: the file cannot be written; nothing is left behind.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        if make_parent:
            target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=f".tmp{target.suffix}")
        tmp = Path(name)
        if callable(content):
            os.close(fd)
            content(tmp)
            _fsync_file(tmp)
        else:
            data = content.encode(encoding) if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if mode is None:
            mode = target.stat().st_mode & 0o777 if target.is_file() else _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise OutputError.from_os(target, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    fsync_dir(target.parent)
    return target


@functools.cache
def _default_mode() -> int:
    umask = os.umask(0)  # read once: the process's umask, put straight back
    os.umask(umask)
    return 0o666 & ~umask


def replace_dir(stage: Path, target: Path, aside: Path) -> None:
    """Move the finished folder ``stage`` to ``target`` by one rename.

    An existing ``target`` is first renamed to ``aside`` (a free name on the same filesystem),
    put back if the move fails, and deleted once the new folder is in place.

    :raises OutputError: the folder cannot be moved; ``target`` is as it was.
    """
    old = None
    try:
        if target.exists():
            os.replace(target, aside)
            old = aside
        try:
            os.replace(stage, target)
        except OSError:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
    except OSError as exc:
        raise OutputError.from_os(target, exc) from exc
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
