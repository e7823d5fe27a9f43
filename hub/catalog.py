"""The catalogue: every backbone every loaded plugin declares.

Built by :func:`build_catalog` from a :class:`~hub.plugins.Registry`; nothing is
global. Names and aliases are matched case-insensitively; a name two manifests
claim is a :class:`~hub.errors.DuplicateBackboneError` naming both origins.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hub.errors import DuplicateBackboneError, ManifestError, UnknownBackboneError
from hub.manifest import BackboneSpec
from hub.manifest_loader import load_manifest_file
from hub.plugins import Registry

__all__ = ["Catalog", "Entry", "build_catalog"]


@dataclass(frozen=True)
class Entry:
    """One catalogue entry: the spec and where it came from."""

    spec: BackboneSpec
    path: Path
    plugin: str

    @property
    def name(self) -> str:
        return self.spec.name


def _key(name: str) -> str:
    return name.strip().lower()


@dataclass
class Catalog:
    """Lookup, aliases, suggestions and filters over manifest entries."""

    entries: dict[str, Entry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        """Add an entry; a clash of name or alias raises, naming both origins."""
        for label in [entry.spec.name, *entry.spec.aliases]:
            k = _key(label)
            owner = self.aliases.get(k)
            if owner is not None:
                other = self.entries[owner]
                raise DuplicateBackboneError(
                    f"Backbone name {label!r} is claimed twice: by {other.name!r} in {other.path} "
                    f"(plugin {other.plugin!r}) and by {entry.name!r} in {entry.path} (plugin "
                    f"{entry.plugin!r}). Rename one, or disable a plugin with HUB_DISABLE_PLUGINS.")
        self.entries[entry.spec.name] = entry
        for label in [entry.spec.name, *entry.spec.aliases]:
            self.aliases[_key(label)] = entry.spec.name

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self.entries.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self.aliases

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Close matches for a misspelt name, canonical names first."""
        k = _key(name)
        hits = difflib.get_close_matches(k, list(self.aliases), n=n * 2, cutoff=0.5)
        out: list[str] = []
        for hit in hits:
            canonical = self.aliases[hit]
            if canonical not in out:
                out.append(canonical)
        if not out:
            out = [a for a, c in self.aliases.items() if k in a][:n]
            out = list(dict.fromkeys(self.aliases[a] for a in out))
        return out[:n]

    def get(self, name: str) -> Entry:
        """The entry for a name or alias.

        :raises UnknownBackboneError: with close matches as suggestions.
        """
        canonical = self.aliases.get(_key(name))
        if canonical is None:
            raise UnknownBackboneError(name, self.suggest(name))
        return self.entries[canonical]

    def filter(self, *, pattern: str | None = None, modality: str | None = None,
               provider: str | None = None, task: str | None = None,
               max_params: float | None = None, min_top1: float | None = None,
               where: Callable[[Entry], bool] | None = None) -> list[Entry]:
        """Entries matching every given criterion (``pattern`` is a glob over names and aliases;
        ``max_params`` is in millions)."""
        out = []
        for e in self:
            s = e.spec
            if pattern and not any(fnmatch.fnmatch(_key(n), _key(pattern)) for n in [s.name, *s.aliases]):
                continue
            if modality and s.modality != modality:
                continue
            if provider and s.provider != provider:
                continue
            if task and task not in s.tasks:
                continue
            if max_params is not None and (s.stats.params_m is None or s.stats.params_m > max_params):
                continue
            if min_top1 is not None and (s.stats.top1 is None or s.stats.top1.value < min_top1):
                continue
            if where is not None and not where(e):
                continue
            out.append(e)
        return out


def build_catalog(registry: Registry) -> Catalog:
    """Read every registered manifest file into a :class:`Catalog`.

    An unreadable or invalid file is recorded against the plugin that registered
    it (and listed in :attr:`Catalog.problems`); the other files still load.

    :raises DuplicateBackboneError: when two manifests claim one name or alias.
    """
    catalog = Catalog()
    with _no_gc():
        _read_all(registry, catalog)
    return catalog


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while manifests are read.

    Parsing builds thousands of small objects, which trigger collections; in a process that
    has imported torch and a model library each full collection walks millions of objects
    (measured: reading the built-in manifests took 0.27 s there against 0.03 s with the
    collector paused). The parsed data holds no reference cycles worth collecting early.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.lru_cache(maxsize=256)
def _parsed(path: str, stat: tuple[int, int, int, int, int]) -> tuple[BackboneSpec, ...]:
    """The specs of the manifest at ``path`` as it was when ``stat`` (device, inode, size, mtime,
    ctime) was taken: a catalogue rebuilt after :func:`hub.refresh` re-reads only the files
    that changed (specs are frozen, so entries of two catalogues can share them). An invalid
    file raises each time (exceptions are not cached)."""
    return tuple(load_manifest_file(path))


def _load(path: Path) -> list[BackboneSpec]:
    try:
        st = Path(path).stat()
    except OSError:
        return load_manifest_file(path)  # says what cannot be read
    return list(_parsed(str(path), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                    st.st_ctime_ns)))


def _read_all(registry: Registry, catalog: Catalog) -> None:
    for path, plugin in registry.manifest_paths:
        try:
            specs = _load(path)
        except ManifestError as exc:
            catalog.problems.append(str(exc))
            record = registry.plugins.get(plugin)
            if record is not None:
                record.fail(str(exc))
            continue
        for spec in specs:
            catalog.add(Entry(spec=spec, path=path, plugin=plugin))
