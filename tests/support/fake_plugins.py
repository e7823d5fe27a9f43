"""Writing throwaway plugin distributions (dist-info + module) that importlib.metadata finds."""

from __future__ import annotations

from pathlib import Path


def write_plugin_dist(root: Path, *, dist: str, entry: str, module: str, source: str,
                      files: dict[str, str] | None = None) -> Path:
    """Create ``root/<module>.py`` (or a package when ``files`` is given) and a dist-info whose
    ``backbone_hub`` entry point ``entry`` points at it. Put ``root`` on sys.path to install it."""
    root.mkdir(parents=True, exist_ok=True)
    if files:
        pkg = root / module
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text(source)
        for rel, text in files.items():
            (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
            (pkg / rel).write_text(text)
    else:
        (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[backbone_hub]\n{entry} = {module}\n")
    return root
