"""docs/architecture.md is the map of the package: it must name every module that exists, and
nothing that does not.

A top-level module is named by its path (`hub/backbone.py`); a subpackage by its folder
(`hub/train/`) in the first column of a table row, and each of its modules by file name
(`trunk.py`) in that row. Modules starting with an underscore (besides `__init__.py`) are
private helpers of their package and may go unnamed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def _rows() -> dict[str, str]:
    """First-column paths of the module table -> the whole row's text."""
    rows: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `hub/"):
            continue
        first = line.split("|")[1]
        for path in re.findall(r"`(hub/[^`]*)`", first):
            rows[path] = line
    return rows


def _modules() -> tuple[list[str], dict[str, list[str]]]:
    top = sorted(f"hub/{p.name}" for p in (ROOT / "hub").glob("*.py") if p.name != "__init__.py")
    packages: dict[str, list[str]] = {}
    for pkg in sorted(p for p in (ROOT / "hub").iterdir() if (p / "__init__.py").exists()):
        packages[f"hub/{pkg.name}/"] = sorted(
            p.name for p in pkg.glob("*.py") if not p.name.startswith("_"))
    return top, packages


def test_every_top_level_module_is_on_the_map() -> None:
    rows = _rows()
    top, _ = _modules()
    missing = [m for m in top if m not in rows]
    assert not missing, f"docs/architecture.md has no row for {missing}"


def test_every_subpackage_and_its_modules_are_on_the_map() -> None:
    rows = _rows()
    _, packages = _modules()
    problems = []
    for pkg, files in packages.items():
        if pkg not in rows:
            problems.append(f"no row for {pkg}")
            continue
        problems += [f"{pkg} row does not name {f}" for f in files if f"`{f}`" not in rows[pkg]]
    assert not problems, problems


def test_every_path_on_the_map_exists() -> None:
    stale = [p for p in _rows() if not (ROOT / p).exists()]
    assert not stale, f"docs/architecture.md names paths that do not exist: {stale}"
