"""docs/reliability.md stays true: every test its failure catalogue names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_the_reliability_catalogue_names_exists() -> None:
    doc = (REPO_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    table = doc.split("## Failure catalogue", 1)[1]
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", table)
    assert len(named) >= 40
    rows = [line for line in table.splitlines() if line.startswith("| ") and "::" in line]
    assert all("`tests/" in row for row in rows)
    missing = [f"{f}::{t}" for f, t in named
               if not (REPO_ROOT / f).is_file() or t not in _tests_in(REPO_ROOT / f)]
    assert missing == []
