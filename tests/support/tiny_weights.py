"""Small real weight files and manifests for the reliability tests (no torch needed).

``safetensors_bytes`` writes a genuine safetensors file with numpy; ``manifest`` writes the YAML
of one backbone whose weights come from a loopback Hub repo and/or an installed distribution;
``spec_of`` parses it with the real schema. ``snapshot`` records a folder tree so that a test can
prove a failed pull left it exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from hub.manifest import BackboneSpec, WeightVariant
from hub.manifest_loader import parse_manifest
from hub.progress import Bar, Reporter


def safetensors_bytes(seed: int = 0, n: int = 4096) -> bytes:
    """A valid safetensors file with two float32 tensors derived from ``seed``."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    return save({"w": rng.standard_normal((n // 64, 64)).astype(np.float32),
                 "b": rng.standard_normal(64).astype(np.float32)})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique_repo(prefix: str = "org") -> str:
    """A repo id no other test uses (faults on the shared loopback Hub match by path)."""
    return f"{prefix}/m{uuid.uuid4().hex[:12]}"


def manifest(*, name: str = "tiny", variant: str = "v1", repo: str | None = None,
             revision: str = "main", file: str = "model.safetensors", sha256: str | None = None,
             size: int | None = None, fmt: str = "safetensors", files: tuple[str, ...] = (),
             dist: tuple[str, str] | None = None, converter: str | None = None,
             provider: str = "example", extra_backbones: str = "", url: str | None = None,
             sha256_prefix: str | None = None) -> str:
    """Manifest YAML for one image backbone; sources in order: Hub repo, URL, distribution."""
    lines = [
        "backbones:",
        f"  - name: {name}",
        "    modality: image",
        f"    provider: {provider}",
        "    architecture: tinynet",
        "    license: mit",
        "    preprocessing: {image: {size: 64}}",
        "    outputs: {embedding_dim: 32, stages: [{name: s3, channels: 32, stride: 8}]}",
        "    weights:",
        f"      - name: {variant}",
        f"        format: {fmt}",
    ]
    if sha256:
        lines.append(f'        sha256: "{sha256}"')
    if size:
        lines.append(f"        size: {size}")
    if converter:
        lines.append(f"        converter: {converter}")
    if files:
        lines.append("        files:")
        lines += [f"          - {{path: {f}}}" for f in files]
    lines.append("        sources:")
    if repo:
        lines.append(f'          - {{type: huggingface, repo: {repo}, revision: "{revision}", '
                     f"file: {file}}}")
    if url:
        check = f', sha256_prefix: "{sha256_prefix}"' if sha256_prefix else ""
        lines.append(f'          - {{type: url, url: "{url}"{check}}}')
    if dist:
        lines.append(f"          - {{type: distribution, distribution: {dist[0]}, path: {dist[1]}}}")
    return "\n".join(lines) + "\n" + extra_backbones


def spec_of(text: str) -> tuple[BackboneSpec, WeightVariant]:
    (spec,) = parse_manifest(text)
    variant = spec.default_variant
    assert variant is not None
    return spec, variant


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: relative path -> (size, mtime_ns)."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if n in filenames else 0, st.st_mtime_ns)
    return out


def entries_and_tmp(cache: Path) -> dict[str, tuple[int, int]]:
    """The parts of a cache a failed pull must leave untouched: entries and staging."""
    return {k: v for k, v in snapshot(cache).items() if k.startswith(("models", "tmp/"))}


class Recorder(Reporter):
    """A reporter that remembers every event (files, bars' bytes, steps, retries)."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.bytes: dict[str, int] = {}
        self.steps: list[str] = []
        self.retries: list[tuple[str, int, float, str]] = []

    def file(self, name: str) -> None:
        self.files.append(name)

    def bar(self, name: str, total: int | None) -> Bar:
        rec = self

        class _B(Bar):
            def update(self, n: int) -> None:
                rec.bytes[name] = rec.bytes.get(name, 0) + n

        return _B()

    def step(self, message: str) -> None:
        self.steps.append(message)

    def retry(self, name: str, attempt: int, wait: float, reason: str) -> None:
        self.retries.append((name, attempt, wait, reason))
