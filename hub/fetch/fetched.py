"""What a fetcher hands back: local paths, not yet verified (:mod:`hub.weights` checks them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["Fetched", "companion"]


@dataclass(frozen=True)
class Fetched:
    """Local paths for one source: weights, companions, and the resolved commit if any.

    :param in_hf_cache: the paths live in huggingface_hub's cache (and may be evicted from
        it when their bytes are refused), rather than in an installed distribution.
    :param downloaded: the paths are hub's own downloads of a URL source, removed once their
        bytes are stored or refused.
    :param sha256_prefix: what the weights' sha256 must start with (a URL source's publisher
        wrote it into the file name), checked even when the variant pins no sha256.
    """

    weights: Path
    files: dict[str, Path]
    commit: str | None
    source: str
    in_hf_cache: bool = False
    downloaded: bool = False
    sha256_prefix: str | None = None

    @property
    def disposable(self) -> bool:
        """The bytes are a download hub may delete (and fetch again), not an installed file."""
        return self.in_hf_cache or self.downloaded


def companion(base: str, rel: str) -> str:
    """The path of companion file ``rel``, relative to the folder holding the weights ``base``."""
    parent = PurePosixPath(base).parent
    return str(parent / rel) if str(parent) != "." else rel
