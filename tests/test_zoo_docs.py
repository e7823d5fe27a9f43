"""docs/zoo.md and docs/zoo.html are generated from the manifests by docs/gen_zoo.py; they must
not go stale, and docs/choosing.md must quote the table's numbers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from hub.manifest_loader import load_manifest_file

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_zoo", ROOT / "docs" / "gen_zoo.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zoo_page_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    assert committed == _generator().render(), \
        "docs/zoo.md is stale: run `python docs/gen_zoo.py` (or `make docs`) and commit it"


def test_zoo_browser_page_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "zoo.html").read_text(encoding="utf-8")
    assert committed == _generator().render_browser(), \
        "docs/zoo.html is stale: run `python docs/gen_zoo.py` (or `make docs`) and commit it"


def test_zoo_page_lists_every_manifest_entry() -> None:
    page = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    names = [s.name for p in (ROOT / "manifests").glob("*.yaml") for s in load_manifest_file(p)]
    assert len(names) > 50
    for name in names:
        assert f"| `{name}` |" in page


def test_choosing_quotes_the_manifests() -> None:
    """Every 'name (x M params, y GMACs, z % top-1)' in docs/choosing.md matches the manifests."""
    specs = {s.name: s for p in (ROOT / "manifests").glob("*.yaml") for s in load_manifest_file(p)}
    text = (ROOT / "docs" / "choosing.md").read_text(encoding="utf-8")
    quotes = re.findall(r"`([a-z0-9_]+)` \(([\d.]+) M params, ([\d.]+) GMACs(?:, ([\d.]+) % top-1)?\)",
                        text)
    assert len(quotes) >= 10
    for name, params, macs, top1 in quotes:
        s = specs[name]
        assert float(params) == round(s.stats.params_m, 1), name
        assert float(macs) == round(s.stats.gmacs, 2), name
        if top1:
            assert s.stats.top1 is not None and float(top1) == round(s.stats.top1.value, 1), name
